"""The crash matrix: for each kind of subtask and each compensation, the production worker
(`python worker.py`) is killed with SIGKILL while it runs, and a new worker is started. Every takeover
ends SUCCESSFUL with an end state (simulator, metadb, host files) identical to an uncrashed takeover's;
a rollback crashed in every compensation ends with the state from before the takeover.

How a subtask is caught mid-way: tests/support/crash.py.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from ob_takeover.client import TakeoverClient
from tests.support.crash import COMPENSATIONS, SLOWDOWNS, Slowdown, Takeover, retried_activities, slow_down
from tests.support.driver import failed, log_of, named, start, update, wait_for
from tests.support.mariadb import create_database
from tests.support.simulator import simulation
from workflows.precheck import TakeOverPrecheck

pytestmark = pytest.mark.reliability


# Rollbacks crashed in every compensation that has work to do when rolling back from a failure at
# `failure`. The failed subtask itself wrote nothing. Removing process info or the root service list
# finds nothing left to change after a rollback from "Sync all tenant information": the server rows
# are gone and the config URL is still registered; the second case catches the process info removal.
ROLLBACKS: dict[str, tuple[str, list[str]]] = {
    "Sync all tenant information": (
        r"TENANT_ID, TENANT_NAME",
        [name for name in COMPENSATIONS if name not in ("Update server process info", "Record root service list")],
    ),
    "Attach cluster attributes": (r"ob_version\(\) AS VERSION", ["Update server process info"]),
}


# Every run uses the same addresses and ports, so that end states compare equal.
BASE = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.2"
SQL_PORT = random.randint(20000, 40000)


async def run_takeover(
    client: Client, task_queue: str, tmp_path: Path, metadb_url: str | None, crash_during: str | None
) -> dict[str, Any]:
    with simulation(tmp_path, base=BASE, sql_port=SQL_PORT) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, metadb_url or f"sqlite:///{tmp_path / 'metadb.sqlite'}")
        try:
            if crash_during:
                slow_down(crash_during, SLOWDOWNS[crash_during], sim, takeover.metadb_url)
            takeover.spawn()
            handle = await start(client, task_queue, takeover.body)
            if crash_during:
                seconds = await takeover.crash_during(handle, crash_during)
                print(f"{crash_during}: next state {seconds:.1f}s after the kill")
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert task.status.value == "SUCCESSFUL", takeover.last_log()
            return takeover.state()
        finally:
            takeover.stop()


def metadb_for(mariadb: tuple[str, int], slowdowns: list[Slowdown]) -> str | None:
    """A fresh MariaDB metadb when a slowdown needs triggers; otherwise None (SQLite)."""
    if any(s.kind == "metadb" for s in slowdowns):
        return create_database(*mariadb, f"crash_{uuid.uuid4().hex[:10]}")
    return None


@pytest.fixture(scope="module")
def uncrashed() -> dict[str, Any]:
    return {}


@pytest.mark.parametrize("subtask", list(SLOWDOWNS))
async def test_worker_killed_during_subtask(
    client: Client,
    task_queue: str,
    tmp_path: Path,
    subtask: str,
    uncrashed: dict[str, Any],
    mariadb: tuple[str, int],
) -> None:
    if not uncrashed:
        uncrashed.update(await run_takeover(client, f"{task_queue}-ref", tmp_path / "reference", None, None))
    metadb_url = metadb_for(mariadb, [SLOWDOWNS[subtask]])
    crashed = await run_takeover(client, task_queue, tmp_path / "crashed", metadb_url, subtask)
    assert crashed["cluster"] == uncrashed["cluster"]
    assert crashed["metadb"] == uncrashed["metadb"]
    assert crashed["hosts"] == uncrashed["hosts"]


@pytest.mark.parametrize("failure", list(ROLLBACKS))
async def test_worker_killed_during_each_compensation(
    client: Client, task_queue: str, tmp_path: Path, failure: str, mariadb: tuple[str, int]
) -> None:
    statement, victims = ROLLBACKS[failure]
    metadb_url = metadb_for(mariadb, [COMPENSATIONS[name] for name in victims])
    assert metadb_url is not None
    with simulation(tmp_path, base=BASE, sql_port=SQL_PORT) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, metadb_url)
        try:
            before = takeover.state()
            sim.fault(statement, error=4012, message="Timeout")
            takeover.spawn()
            handle = await start(client, task_queue, takeover.body)
            task = await wait_for(handle, failed, timeout=90)
            assert [s.name for s in task.subtasks if s.status.value == "FAILED"] == [failure]
            for name in victims:
                slow_down(name, COMPENSATIONS[name], sim, metadb_url)
            await update(handle, "rollback")
            for name in victims:
                seconds = await takeover.crash_during(handle, name)
                print(f"rollback of {name}: next state {seconds:.1f}s after the kill")
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert (task.status.value, task.operation.value) == ("SUCCESSFUL", "ROLLBACK"), takeover.last_log()
            after = takeover.state()
        finally:
            takeover.stop()
    # The io calibration is the cluster's own, kept after a rollback; nothing else of the takeover is.
    for state in (before, after):
        state["cluster"].pop("io_calibration")
    assert after == before


async def test_worker_stopped_with_sigterm_finishes_its_subtask_and_exits_cleanly(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """A rolling restart as Kubernetes does it: the new worker starts, then the old one gets SIGTERM, which
    lets its running subtask finish (no second attempt) within its grace (OB_TAKEOVER_STOP_GRACE, matched by
    the Deployment's terminationGracePeriodSeconds); it exits 0, and the new worker carries the takeover on."""
    with simulation(tmp_path, zones=1, servers_per_zone=1) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, f"sqlite:///{tmp_path / 'metadb.sqlite'}")
        try:
            slow_down("Reserve host", Slowdown("host", "df"), sim, takeover.metadb_url)
            first = takeover.spawn()
            handle = await start(client, task_queue, takeover.body)
            await wait_for(handle, lambda t: named(t, "Reserve host")[0].status.value == "RUNNING", timeout=60)
            takeover.spawn()  # the new pod is up before the old one is told to stop
            first.terminate()
            assert first.wait(15) == 0, takeover.last_log()
            output = (tmp_path / "worker0.log").read_text()
            assert "stopping: finishing running activities" in output and "Fatal" not in output, output
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert task.status.value == "SUCCESSFUL", takeover.last_log()
            (reserve,) = named(task, "Reserve host")
            log = await log_of(handle, reserve.id)
            assert "attempt 2" not in log and reserve.run_time == 1, log
            # The stopped worker finished it: its log has the subtask's last words.
            assert log.strip().splitlines()[-1] in output
        finally:
            takeover.stop()


async def test_worker_killed_while_it_discovers_the_topology(client: Client, task_queue: str, tmp_path: Path) -> None:
    """Before the first subtask the workflow reads the cluster's topology; a worker killed then is
    replaced and the takeover still runs (the read is retried, not left to time out)."""
    with simulation(tmp_path, zones=1, servers_per_zone=1) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, f"sqlite:///{tmp_path / 'metadb.sqlite'}")
        try:
            sim.call("POST", "/faults", {"match": r"WHERE NAME IN \('cluster'", "error": 0, "delay": 3, "times": 1})
            takeover.spawn()
            handle = await start(client, task_queue, takeover.body)

            async def reading() -> bool:
                return any("version()" in s for lines in sim.state()["statements"].values() for s in lines)

            await takeover.until(reading, "the topology read")
            await takeover.kill_and_replace()
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=90)
            assert task.status.value == "SUCCESSFUL", takeover.last_log()
            assert await retried_activities(handle) == ["discover_topology"], "the topology read was not retried"
        finally:
            takeover.stop()


async def test_worker_killed_while_an_abort_releases_the_lock(
    client: Client, task_queue: str, tmp_path: Path, mariadb: tuple[str, int]
) -> None:
    """Abort (cancel) a takeover and kill the worker while it releases the cluster lock: the release
    runs again on the next worker and no lock is left behind."""
    metadb_url = metadb_for(mariadb, [COMPENSATIONS["Mc lock ob clusters"]])
    assert metadb_url is not None
    with simulation(tmp_path, zones=1, servers_per_zone=1) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, metadb_url)
        try:
            slow_down("Create default user", SLOWDOWNS["Create default user"], sim, metadb_url)
            slow_down("Mc lock ob clusters", COMPENSATIONS["Mc lock ob clusters"], sim, metadb_url)
            takeover.spawn()
            handle = await start(client, task_queue, takeover.body)
            await wait_for(handle, lambda t: named(t, "Create default user")[0].status.value == "RUNNING", 60)
            await handle.cancel()

            async def releasing() -> bool:
                pending = (await handle.describe()).raw_description.pending_activities
                return any(p.activity_type.name == "release_cluster_lock" for p in pending)

            await takeover.until(releasing, "the abort's lock release")
            await takeover.kill_and_replace()
            with pytest.raises(WorkflowFailureError):
                await asyncio.wait_for(handle.result(), timeout=60)
            assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED
            assert takeover.db.query("SELECT * FROM cluster_locks") == []
            assert "ABORTED" in [r["status"] for r in takeover.db.query("SELECT status FROM tasks")]
        finally:
            takeover.stop()


async def test_worker_killed_during_a_precheck(client: Client, task_queue: str, tmp_path: Path) -> None:
    """A precheck whose worker is killed runs again on the next worker and still returns its report."""
    with simulation(tmp_path, zones=1, servers_per_zone=1) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, f"sqlite:///{tmp_path / 'metadb.sqlite'}")
        try:
            slow_down("Prepare take over cluster", SLOWDOWNS["Prepare take over cluster"], sim, takeover.metadb_url)
            takeover.spawn()
            handle = await client.start_workflow(
                TakeOverPrecheck.run, takeover.body, id=f"precheck-{task_queue}", task_queue=task_queue
            )

            async def checking() -> bool:
                pending = (await handle.describe()).raw_description.pending_activities
                return any(p.activity_type.name == "run_precheck" for p in pending)

            await takeover.until(checking, "the precheck")
            killed = await takeover.kill_and_replace()
            report = await asyncio.wait_for(handle.result(), timeout=60)
            print(f"precheck: report {time.monotonic() - killed:.1f}s after the kill")
            assert report.passed, [i for i in report.items if i.status == "FAILED"]
            assert await retried_activities(handle) == ["run_precheck"], "the precheck did not run again"
        finally:
            takeover.stop()


async def test_through_obproxy_a_worker_killed_mid_subtask_loses_nothing(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Proxy mode: the worker is killed while "Create default user" runs through OBProxy; the next worker
    finishes the takeover, every SQL session still going through the proxy."""
    with simulation(tmp_path, extra=["--proxy-port", "0"]) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, f"sqlite:///{tmp_path / 'metadb.sqlite'}")
        takeover.body = sim.through_proxy(takeover.body)
        try:
            slow_down("Create default user", SLOWDOWNS["Create default user"], sim, takeover.metadb_url)
            takeover.spawn()
            handle = await start(client, task_queue, takeover.body)
            await takeover.crash_during(handle, "Create default user")
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert task.status.value == "SUCCESSFUL", takeover.last_log()
        finally:
            takeover.stop()
        state = sim.state()
    assert {entry["endpoint"] for entry in state["logins"]} == {"proxy"}
    assert "ocp_monitor" in state["users"]


async def test_through_obproxy_a_rollback_restores_the_starting_state(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Proxy mode: "Sync all tenant information" fails; the rollback leaves cluster, metadb and hosts as
    they were before the takeover."""
    with simulation(tmp_path, extra=["--proxy-port", "0"]) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, f"sqlite:///{tmp_path / 'metadb.sqlite'}")
        takeover.body = sim.through_proxy(takeover.body)
        try:
            before = takeover.state()
            sim.fault(r"TENANT_ID, TENANT_NAME", error=4012, message="Timeout")
            takeover.spawn()
            handle = await start(client, task_queue, takeover.body)
            task = await wait_for(handle, failed, timeout=90)
            assert [s.name for s in task.subtasks if s.status.value == "FAILED"] == ["Sync all tenant information"]
            await update(handle, "rollback")
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert (task.status.value, task.operation.value) == ("SUCCESSFUL", "ROLLBACK"), takeover.last_log()
            after = takeover.state()
        finally:
            takeover.stop()
    for state in (before, after):
        state["cluster"].pop("io_calibration")
    assert after == before


async def test_a_release_survives_worker_crashes(client: Client, task_queue: str, tmp_path: Path) -> None:
    """A release of a managed cluster with the worker killed while it restores the agent configuration and
    while it drops the monitor user: the release ends SUCCESSFUL and leaves the state from before the
    takeover (but for the proxyro user, which stays)."""
    with simulation(tmp_path, zones=2, servers_per_zone=1) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, f"sqlite:///{tmp_path / 'metadb.sqlite'}")
        try:
            before = takeover.state()
            takeover.spawn()
            handle = await start(client, task_queue, takeover.body)
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert task.status.value == "SUCCESSFUL" and task.cluster_id is not None, takeover.last_log()
            takeovers = TakeoverClient(client, task_queue, db=takeover.db, vault=takeover.vault)
            release = await takeovers.release(task.cluster_id)
            crashes = {
                "Restore ocp agent config": COMPENSATIONS["Refresh ocp agent config"],
                "Drop default user": COMPENSATIONS["Create default user"],
            }
            for name, slowdown in crashes.items():
                slow_down(name, slowdown, sim, takeover.metadb_url)
            for name in crashes:
                seconds = await takeover.crash_during(release.handle, name)
                print(f"release, {name}: next state {seconds:.1f}s after the kill")
            released = await wait_for(release.handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert (released.name, released.status.value) == ("Move out OB cluster", "SUCCESSFUL"), takeover.last_log()
            after = takeover.state()
        finally:
            takeover.stop()
    for state in (before, after):
        state["cluster"].pop("io_calibration")
    assert after["cluster"]["users"].pop("proxyro")["grants"] == ["SELECT ON oceanbase.*"]
    after["metadb"]["credentials"] = [c for c in after["metadb"]["credentials"] if c["name"] != "obcluster:1:proxyro"]
    assert after == before
