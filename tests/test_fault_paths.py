"""Operator paths under faults, on a simulated 3-zone cluster with SSH hosts and the real activities.

- Each fan-out stage: a fault on one server (or host) fails that one branch, naming it; the operator
  retries it once the fault is gone and the takeover ends SUCCESSFUL.
- Each stage before "Set proxyro password to sys tenant": a fault there, then a rollback, leaves the
  cluster, the metadb and the hosts as they were before the takeover.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from activities.registry import build_activities
from activities.runtime import Runtime
from metadb import clusters
from tests.support.driver import failed, log_of, named, start, update, wait_for
from tests.support.simulator import (
    Simulation,
    end_state,
    sim_runtime,
    simulation,
    takeover_body,
    unwrap_host_commands,
    wrap_host_command,
)
from worker import build_worker

pytestmark = pytest.mark.reliability


@dataclass(frozen=True)
class Fault:
    """A fault on the second server or host: a statement (text, not a pattern) the simulator answers
    with OceanBase error 4012 once, or a command on the host that fails until the fault is cleared."""

    kind: str  # "sql" or "host"
    match: str  # statement text ({ip}, {port}, {zone}, {label} of the victim filled in); or a command
    args: str = ""  # host: only when the command's arguments contain this
    cause: str = "OceanBase error 4012"  # what the failed subtask's log names (a pattern)
    skip: int = 0  # matching calls that still work first (an earlier subtask runs the same statement)
    times: int = 1  # sql: how many times the statement fails
    timeout_scale: str | None = None  # for a subtask that waits out errors: fail it by its timeout, sooner


def host_failure(command: str, args: str, skip: int = 0) -> Fault:
    return Fault("host", command, args, cause=f"{command}: injected failure", skip=skip)


FAN_OUT: dict[str, Fault] = {
    "Run io calibration": Fault("sql", "RUN JOB 'io_calibration' SERVER = '{label}'"),
    "Update server process info": host_failure("ps", "lstart", skip=1),
    "Refresh ocp agent config": host_failure("mv", "ob_cluster.json"),
    "Active agent modules": host_failure("mv", "modules.json"),
    "Update observer status": Fault("sql", "DBA_OB_SERVERS WHERE SVR_IP = '{ip}' AND SVR_PORT = {port}"),
    "Update zone status": Fault("sql", "DBA_OB_ZONES WHERE ZONE = '{zone}'"),
}

BEFORE_PROXYRO: dict[str, Fault] = {
    "Prepare take over cluster": Fault("sql", "'cluster_id', 'obconfig_url'"),
    "Reserve host": host_failure("df", "-Pk", skip=1),
    "Create default user": Fault("sql", "CREATE USER IF NOT EXISTS ocp_monitor"),
    "Register config url": Fault("sql", "ALTER SYSTEM SET obconfig_url"),
    "Run io calibration": FAN_OUT["Run io calibration"],
    "Record root service list": Fault("sql", "CDB_OB_LS_LOCATIONS"),
    # Waits out errors until its timeout (1200 s, here scaled to 4.8 s); the log says what it waited for.
    "Wait cluster accessible": Fault(
        "sql",
        "AS NOT_READY",
        times=1000,
        timeout_scale="0.004",
        cause="waiting: .*OceanBase error 4012.*did not finish within its timeout",
    ),
    "Update server process info": FAN_OUT["Update server process info"],
    "Attach cluster attributes": Fault("sql", "ob_version() AS VERSION"),
    "Refresh ocp agent config": FAN_OUT["Refresh ocp agent config"],
    "Active agent modules": FAN_OUT["Active agent modules"],
    "Sync cluster info": Fault("sql", "SELECT ZONE, STATUS, REGION, IDC, TYPE", skip=1),  # after the attributes
    "Sync all tenant information": Fault("sql", "TENANT_ID, TENANT_NAME"),
}


@dataclass
class Setup:
    sim: Simulation
    runtime: Runtime
    body: dict[str, Any]

    @property
    def victim(self) -> dict[str, Any]:
        """The server the faults hit (zone2's), and its host."""
        server: dict[str, Any] = self.sim.ready["servers"][1]
        return server

    def label(self) -> str:
        return f"{self.victim['address']}:{self.victim['rpc_port']}"

    def inject(self, fault: Fault) -> None:
        if fault.kind == "sql":
            statement = fault.match.format(
                ip=self.victim["address"], port=self.victim["rpc_port"], zone=self.victim["zone"], label=self.label()
            )
            self.sim.fault(re.escape(statement), error=4012, message="Timeout", times=fault.times, skip=fault.skip)
        else:
            root = self.sim.host_root(self.victim["address"])
            calls = root / f"usr/local/bin/{fault.match}.calls"
            fail = f'echo "{fault.match}: injected failure" >&2; exit 1'
            count = f"n=$(cat {calls} 2>/dev/null || echo 0); echo $((n + 1)) > {calls}"
            action = f'{count}; [ "$n" -lt {fault.skip} ] || {{ {fail}; }}'
            wrap_host_command(root, fault.match, fault.args, action)

    def clear(self) -> None:
        unwrap_host_commands(self.sim)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with simulation(tmp_path, zones=3, servers_per_zone=1) as sim:
        runtime = sim_runtime(tmp_path, sim)
        yield Setup(sim, runtime, takeover_body(sim, runtime))


def branch_node(setup: Setup, stage: str) -> str:
    """How the failed branch of a fan-out stage names its node in the task JSON."""
    if stage in ("Refresh ocp agent config", "Active agent modules"):
        return str(setup.victim["address"])
    if stage == "Update zone status":
        return str(setup.victim["zone"])
    return setup.label()


# What the retried branch left behind, seen from outside.
def _done(setup: Setup, stage: str) -> bool:
    db, victim = setup.runtime.db, setup.victim
    cluster = clusters.find_cluster(db, "obcluster", 1)
    assert cluster is not None
    servers = {s["ip"]: s for s in clusters.rows_of(db, "servers", cluster["id"])}
    conf = setup.sim.host_root(victim["address"]) / "home/admin/ocp_agent/conf"
    checks: dict[str, Callable[[], bool]] = {
        "Run io calibration": lambda: setup.sim.state()["io_calibration"][setup.label()] == "READY",
        "Update server process info": lambda: bool(servers[victim["address"]]["process_info"]),
        "Refresh ocp agent config": lambda: '"obcluster"' in (conf / "ob_cluster.json").read_text(),
        "Active agent modules": lambda: '"ob_metrics": true' in (conf / "modules.json").read_text(),
        "Update observer status": lambda: servers[victim["address"]]["status"] == "ACTIVE",
        "Update zone status": lambda: (
            {z["name"]: z["status"] for z in clusters.rows_of(db, "zones", cluster["id"])}
            == {"zone1": "ACTIVE", "zone2": "ACTIVE", "zone3": "ACTIVE"}
        ),
    }
    return checks[stage]()


@pytest.mark.parametrize("stage", list(FAN_OUT))
async def test_fault_on_one_branch_then_retry_subtask(
    client: Client, task_queue: str, setup: Setup, stage: str
) -> None:
    setup.inject(FAN_OUT[stage])
    async with build_worker(client, activities=build_activities(setup.runtime), queue=task_queue):
        handle = await start(client, task_queue, setup.body)
        task = await wait_for(handle, failed, timeout=60)
        (bad,) = [s for s in task.subtasks if s.status.value == "FAILED"]
        assert (bad.name, bad.node) == (stage, branch_node(setup, stage))
        siblings = [s for s in named(task, stage) if s.id != bad.id]
        assert len(siblings) == 2 and {s.status.value for s in siblings} == {"SUCCESSFUL"}
        log = await log_of(handle, bad.id)
        assert re.search(FAN_OUT[stage].cause, log) and str(bad.node) in log, log
        setup.clear()
        await update(handle, "retry_subtask", bad.id)
        result = await handle.result()
    assert result.status.value == "SUCCESSFUL"
    retried = next(s for s in result.subtasks if s.id == bad.id)
    assert retried.run_time == 2 and retried.operation.value == "RETRY"
    assert _done(setup, stage)
    assert setup.runtime.db.query("SELECT * FROM cluster_locks") == []


@pytest.mark.parametrize("stage", list(BEFORE_PROXYRO))
async def test_rollback_from_a_failure_restores_the_starting_state(
    client: Client, task_queue: str, setup: Setup, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = end_state(setup.sim, setup.runtime.db)
    fault = BEFORE_PROXYRO[stage]
    runtime = setup.runtime
    if fault.timeout_scale:
        scale = {"timeout_scale": float(fault.timeout_scale)}
        runtime = dataclasses.replace(runtime, settings=runtime.settings.model_copy(update=scale))
    setup.inject(fault)
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await start(client, task_queue, setup.body)
        task = await wait_for(handle, failed, timeout=60)
        assert [s.name for s in task.subtasks if s.status.value == "FAILED"] == [stage]
        (bad,) = [s for s in task.subtasks if s.status.value == "FAILED"]
        log = await log_of(handle, bad.id)
        assert re.search(fault.cause, log, re.DOTALL), log
        setup.clear()
        setup.sim.call("DELETE", "/faults")
        await update(handle, "rollback")
        result = await handle.result()
    assert (result.status.value, result.operation.value) == ("SUCCESSFUL", "ROLLBACK")
    after = end_state(setup.sim, setup.runtime.db)
    # The io calibration results are the cluster's own and stay; nothing else of the takeover does.
    for state in (before, after):
        state["cluster"].pop("io_calibration")
    assert after["cluster"] == before["cluster"]
    assert after["metadb"] == before["metadb"]
    assert after["hosts"] == before["hosts"]
