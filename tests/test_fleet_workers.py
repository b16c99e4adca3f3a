"""Fleets on real clusters and real worker processes: two production workers share a fleet and one is
killed mid-fleet without losing a cluster; takeovers started while others calibrate do not starve."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from activities.registry import build_activities
from contracts.fleet import MemberStatus
from contracts.settings import load_settings
from metadb import hosts
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_master_key
from ob_takeover.client import Fleet, TakeoverClient
from tests.support.mariadb import create_database
from tests.support.simulator import Simulation, many_simulations, simulated_bodies, worker_env
from worker import build_worker

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def fleet_setup(
    tmp_path: Path, count: int, metadb_url: str, calibration: float
) -> Iterator[tuple[list[Simulation], list[dict[str, Any]], dict[str, str]]]:
    """`count` one-server clusters calibrating for `calibration` s, their takeover bodies, and the
    environment a production worker needs for them."""
    env = worker_env(
        metadb=metadb_url,
        key_file=tmp_path / "master.key",
        known_hosts=tmp_path / "known_hosts",
        poll_interval=0.2,
        timeout_scale=0.2,
        log_level="WARNING",
    )
    db = Database(metadb_url)
    migrate(db)
    vault = Vault(load_master_key(load_settings(env)))
    vault.verify(db)
    host_type = hosts.add_host_type(db, "fleet")
    with many_simulations(tmp_path, count, extra=["--io-calibration-seconds", str(calibration)]) as sims:
        bodies = simulated_bodies(db, vault, sims, host_type)
        try:
            yield sims, bodies, env
        finally:
            db.close()


async def until_members(fleet: Fleet, predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    view = None
    while time.monotonic() < deadline:
        try:
            view = await fleet.view()
        except Exception:  # no worker has run the fleet's first task yet
            view = None
        if view is not None and predicate(view):
            return view
        await asyncio.sleep(0.2)
    raise AssertionError(f"fleet condition not reached: {view.counts if view else 'no table'}")


async def worker_pids(client: Client, workflow_id: str) -> set[int]:
    """The processes that completed the workflow's workflow tasks and activities (identity `pid@host`)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    identities = set()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            identities.add(event.workflow_task_completed_event_attributes.identity)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            identities.add(event.activity_task_completed_event_attributes.identity)
    return {int(identity.split("@")[0]) for identity in identities if identity.split("@")[0].isdigit()}


async def until_polling(client: Client, task_queue: str, pids: set[int], timeout: float = 60) -> None:
    """Until every process in `pids` polls `task_queue` for workflow tasks and for activities: a worker
    that starts later than the other would otherwise find the work already taken."""
    deadline = time.monotonic() + timeout
    kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    while True:
        polling = []
        for kind in kinds:
            request = DescribeTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind
            )
            pollers = (await client.workflow_service.describe_task_queue(request)).pollers
            polling.append({int(p.identity.split("@")[0]) for p in pollers if p.identity.split("@")[0].isdigit()})
        if all(pids <= seen for seen in polling):
            return
        assert time.monotonic() < deadline, f"workers {pids} not all polling {task_queue}: {polling}"
        await asyncio.sleep(0.2)


@pytest.mark.reliability
async def test_two_workers_share_a_fleet_and_one_is_killed_mid_fleet(
    client: Client, task_queue: str, tmp_path: Path, mariadb: tuple[str, int]
) -> None:
    metadb_url = create_database(*mariadb, f"fleet_{uuid.uuid4().hex[:10]}")
    with fleet_setup(tmp_path, 6, metadb_url, calibration=4) as (sims, bodies, env):
        env = {
            **env,
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "OB_TAKEOVER_TASK_QUEUE": task_queue,
        }
        logs = [(tmp_path / f"worker{n}.log").open("wb") for n in range(2)]
        workers = [
            subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            for log in logs
        ]
        try:
            await until_polling(client, task_queue, {w.pid for w in workers})
            fleet = await TakeoverClient(client, task_queue).start_fleet(
                {"requests": bodies, "maxConcurrent": 6}, f"workers-{uuid.uuid4().hex[:8]}"
            )
            # Kill one worker while every cluster calibrates (the subtasks of both workers are mid-way).
            await until_members(fleet, lambda v: v.counts.get("RUNNING", 0) == 6, timeout=60)
            await asyncio.sleep(2.0)
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            killed = time.monotonic()
            result = await asyncio.wait_for(fleet.result(), 120)
            after_kill = time.monotonic() - killed
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
                    worker.wait(15)
            for log in logs:
                log.close()
        assert [m.status for m in result.members] == [MemberStatus.SUCCESSFUL] * 6, result.members
        ids = [fleet.workflow_id, *(m.workflow_id for m in result.members)]
        pids = set().union(*[await worker_pids(client, workflow_id) for workflow_id in ids])
        assert pids == {workers[0].pid, workers[1].pid}  # both workers worked for the fleet
        assert all("ocp_monitor" in sim.state()["users"] for sim in sims)
        db = Database(metadb_url)
        try:
            assert db.query("SELECT * FROM cluster_locks") == []
            assert [r["status"] for r in db.query("SELECT status FROM clusters")] == ["RUNNING"] * 6
        finally:
            db.close()
        print(f"fleet of 6 ended {after_kill:.1f} s after one of its two workers was killed")


async def test_takeovers_started_while_others_calibrate_do_not_starve(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Six takeovers calibrate (12 s each), then two more start: all eight end SUCCESSFUL at test
    timeouts (a fifth of the table's). The two late ones once timed out in topology discovery, waiting
    for a thread that the six pollers held."""
    metadb_url = f"sqlite:///{tmp_path / 'metadb.sqlite'}"
    with fleet_setup(tmp_path, 8, metadb_url, calibration=12) as (_, bodies, env):
        settings = load_settings(env)
        from activities.runtime import Runtime

        runtime = Runtime.from_settings(settings)
        takeovers = TakeoverClient(client, task_queue, db=runtime.db, vault=runtime.vault)
        async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
            first = await takeovers.start_fleet(
                {"requests": bodies[:6], "maxConcurrent": 6}, f"six-{uuid.uuid4().hex[:8]}"
            )
            await until_members(first, lambda v: v.counts.get("RUNNING", 0) == 6, timeout=60)
            await asyncio.sleep(3.0)
            late = await asyncio.gather(*(takeovers.start(body) for body in bodies[6:]))
            fleet = await asyncio.wait_for(first.result(), 120)
            tasks = await asyncio.wait_for(asyncio.gather(*(t.result() for t in late)), 60)
        runtime.db.close()
    assert [m.status for m in fleet.members] == [MemberStatus.SUCCESSFUL] * 6
    assert [t.status.value for t in tasks] == ["SUCCESSFUL", "SUCCESSFUL"]
