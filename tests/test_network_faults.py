"""A takeover across a network that fails for a while: a 30 s partition of a host or a server in the middle of
a takeover heals and the takeover ends SUCCESSFUL with no operator (the subtask that met it waits for it, as a
TCP connection does, or its next attempt goes on), and the subtask's log says so; connections cut in the
middle of the work are replaced without doing anything twice."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.registry import build_activities
from activities.runtime import Runtime
from tests.support.driver import log_of, start, wait_for
from tests.support.simulator import Simulation, sim_runtime, simulation, takeover_body
from worker import build_worker

PARTITION_SECONDS = 30


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulation]:
    # io calibration takes 3 s here: the window in which the faults are injected.
    with simulation(tmp_path, network=True, latency_ms=2, extra=["--io-calibration-seconds", "3"]) as running:
        yield running


@pytest.fixture
def runtime(tmp_path: Path, sim: Simulation) -> Runtime:
    # The subtasks' own timeouts (OCP's, 60 s and more), not the suite's shortened ones: what is tested is
    # whether a takeover rides out the partition as it would in production.
    runtime = sim_runtime(tmp_path, sim)
    return dataclasses.replace(runtime, settings=runtime.settings.model_copy(update={"timeout_scale": 1.0}))


def running(name: str):  # type: ignore[no-untyped-def]
    return lambda task: any(s.name == name and s.status.value == "RUNNING" for s in task.subtasks)


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("subtask", "endpoint_of"),
    [
        # A host's SSH and its servers' SQL go silent while io calibration runs, before the host's own steps.
        ("Run io calibration", lambda sim: f"host:{sim.ready['hosts'][-1]['address']}"),
        # The server the takeover talks SQL to goes silent while io calibration is polled through it.
        ("Run io calibration", lambda sim: f"{sim.address}:{sim.sql_port}"),
    ],
    ids=["host", "sql-server"],
)
async def test_a_partition_mid_takeover_heals_and_the_takeover_succeeds(
    client: Client, task_queue: str, sim: Simulation, runtime: Runtime, subtask: str, endpoint_of: object
) -> None:
    endpoint = endpoint_of(sim)  # type: ignore[operator]
    body = takeover_body(sim, runtime)
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await start(client, task_queue, body)
        await wait_for(handle, running(subtask), timeout=90)
        sim.call("POST", "/network/partitions", {"endpoint": endpoint, "seconds": PARTITION_SECONDS})
        task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=180)
        lines = [line for s in task.subtasks for line in (await log_of(handle, s.id)).splitlines()]
    assert task.status.value == "SUCCESSFUL", [(s.name, s.node, s.status.value) for s in task.subtasks][-10:]
    # Nobody operated, and the takeover did meet the partition: it could not end before the partition healed.
    began = min(datetime.fromisoformat(s.start_time) for s in task.subtasks if s.start_time)
    ended = max(datetime.fromisoformat(s.finish_time) for s in task.subtasks if s.finish_time)
    assert (ended - began).total_seconds() >= PARTITION_SECONDS, (began, ended)
    assert all(s.run_time == 1 for s in task.subtasks), "an operator's retry was needed"
    # The log says what happened: an answer held up by the partition, or an attempt that ended for it (and why).
    address = endpoint.removeprefix("host:").split(":")[0]
    told = [line for line in lines if address in line and ("to answer" in line or re.match(r"attempt \d+ \(", line))]
    assert told, [line for line in lines if "attempt" in line or "answer" in line]
    assert all(re.match(r"attempt \d+ \(attempt \d+: \w+", line) for line in lines if line.startswith("attempt "))


@pytest.mark.timeout(240)
async def test_connections_cut_mid_takeover_are_retried_without_doing_anything_twice(
    client: Client, task_queue: str, sim: Simulation, runtime: Runtime
) -> None:
    body = takeover_body(sim, runtime)
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await start(client, task_queue, body)
        await wait_for(handle, running("Run io calibration"), timeout=90)
        for host in sim.ready["hosts"]:
            sim.call("POST", "/network/cuts", {"endpoint": f"host:{host['address']}"})
        await asyncio.sleep(0.5)
        sim.call("POST", "/network/cuts", {"endpoint": f"{sim.address}:{sim.sql_port}"})
        task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=180)
    assert task.status.value == "SUCCESSFUL", [(s.name, s.node, s.status.value) for s in task.subtasks][-10:]
    state = sim.state()
    # Once: the monitor user is created once (its grants not doubled), the config URL set once.
    assert state["users"]["ocp_monitor"]["grants"] == ["SELECT ON *.*"]
    statements = [entry["sql"].upper() for entry in state["statement_log"] if not entry["error"]]
    assert len([sql for sql in statements if sql.startswith("CREATE USER") and "OCP_MONITOR" in sql]) == 1
    assert len([sql for sql in statements if "SET OBCONFIG_URL" in sql.replace("`", "")]) == 1
