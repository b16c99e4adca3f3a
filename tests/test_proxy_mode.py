"""Takeovers through the simulated OBProxy: every SQL session logs in as `user@sys#cluster[:id]` at the
proxy's port, host work still goes to the servers' hosts, and a standby cluster is taken over under
OCP's standby task name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.registry import build_activities
from activities.runtime import Runtime
from metadb import clusters, inventory
from ob_takeover.api.inventory import ob_cluster
from tests.support.driver import log_of, start, wait_for
from tests.support.simulator import Simulation, sim_runtime, simulation, takeover_body
from worker import build_worker


@pytest.fixture(params=["primary", "standby"])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Simulation]:
    extra = ["--proxy-port", "0", *(["--standby"] if request.param == "standby" else [])]
    with simulation(tmp_path, extra=extra) as running:
        yield running


async def test_a_takeover_through_obproxy(client: Client, task_queue: str, sim: Simulation, tmp_path: Path) -> None:
    runtime: Runtime = sim_runtime(tmp_path, sim)
    standby = sim.ready["cluster"]["standby"]
    body = sim.through_proxy(takeover_body(sim, runtime), **({"obClusterId": 1} if standby else {}))
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await start(client, task_queue, body)
        task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=90)
        failures = [await log_of(handle, s.id) for s in task.subtasks if s.status.value == "FAILED"]
        assert task.status.value == "SUCCESSFUL", failures
    assert task.name == f"Take over {'standby' if standby else 'primary'} OB cluster"
    state = sim.state()
    # Every SQL session came through the proxy, in OBProxy's login form.
    logins = {(entry["endpoint"], entry["login"]) for entry in state["logins"] if entry["error"] is None}
    cluster = "obcluster:1" if standby else "obcluster"
    users = ("root", "ocp_monitor", "proxyro")  # proxyro logs in once: its new password is checked
    assert logins == {("proxy", f"{user}@sys#{cluster}") for user in users}, logins
    assert {entry["endpoint"] for entry in state["statement_log"]} == {"proxy"}
    assert "ocp_monitor" in state["users"] and "proxyro" in state["users"]
    assert sorted(state["io_calibration"].values()) == ["READY"] * 6
    # The cluster is managed at the proxy's endpoint, its hosts were worked on over SSH.
    record = clusters.find_cluster(runtime.db, "obcluster", 1)
    assert record is not None and record["status"] == "RUNNING"
    # OCP's ObCluster shows a standby as one, managed through the proxy's endpoint.
    found = inventory.cluster_inventory(runtime.db, int(record["id"]))
    assert found is not None
    shown = ob_cluster(found)
    assert shown.type == ("STANDBY" if standby else "PRIMARY") and shown.connection_mode == "proxy"
    assert shown.server_count == 6 and len(shown.zones) == 3
    for host in sim.ready["hosts"]:
        assert (Path(host["root"]) / "home/admin/ocp_agent/conf/ob_cluster.json").exists()
