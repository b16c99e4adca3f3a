"""The Temporal dev server (SQLite file) stopped and started again: in the middle of a takeover, the worker and
the client reconnect and the takeover completes; a managed cluster's verification schedule, created once its
takeover succeeded, outlives a restart of the worker and of Temporal and is gone after a release."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.service import RPCError, RPCStatusCode

from activities.registry import build_activities
from contracts.engine import VERIFY_WORKFLOW, verify_schedule_id
from metadb import verifications
from ob_takeover.client import TakeoverClient
from ob_takeover.codec import data_converter
from tests.conftest import binary
from tests.support.crash import Takeover
from tests.support.driver import named, start, wait_for
from tests.support.mariadb import free_port
from tests.support.simulator import sim_runtime, simulation, takeover_body
from worker import build_worker

pytestmark = pytest.mark.reliability


def dev_server(db_file: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            binary("temporal"), "server", "start-dev", "--db-filename", str(db_file), "--ip", "127.0.0.1",
            "--port", str(port), "--headless", "--log-level", "error",
            "--search-attribute", "ObClusterName=Keyword", "--search-attribute", "ObClusterAddress=Keyword",
            "--search-attribute", "ObTaskStatus=Keyword",
        ],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


class RestartableTemporal:
    """A dev server keeping its state in a SQLite file, so that it can be stopped and started again."""

    def __init__(self, directory: Path) -> None:
        self.db_file = directory / "temporal.db"
        self.log = directory / "temporal.log"
        self.port = free_port()
        self.process = dev_server(self.db_file, self.port, self.log)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)

    async def restart(self) -> Client:
        """Stop the server, start it again on the same file and port; a client once it answers."""
        self.stop()
        await asyncio.sleep(2)
        self.process = dev_server(self.db_file, self.port, self.log)
        return await connect(self.port)


@pytest.fixture(scope="module")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableTemporal]:
    """One restartable dev server for this module's tests (each uses a task queue of its own)."""
    server = RestartableTemporal(tmp_path_factory.mktemp("temporal"))
    try:
        yield server
    finally:
        server.stop()


async def connect(port: int) -> Client:
    deadline = time.monotonic() + 60
    while True:
        try:
            return await Client.connect(f"127.0.0.1:{port}", data_converter=data_converter())
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def test_takeover_survives_a_temporal_restart(tmp_path: Path, temporal: RestartableTemporal) -> None:
    client = await connect(temporal.port)
    with simulation(tmp_path, zones=1, servers_per_zone=2) as sim:
        runtime = sim_runtime(tmp_path, sim)
        body = takeover_body(sim, runtime)
        # io calibration takes a few seconds: time to restart the server under it.
        sim.call("POST", "/faults", {"match": "RUN JOB 'io_calibration'", "error": 0, "delay": 3, "times": 2})
        async with build_worker(client, activities=build_activities(runtime), queue="restart-test"):
            handle = await start(client, "restart-test", body)
            await wait_for(
                handle, lambda t: any(s.status.value == "RUNNING" for s in named(t, "Run io calibration")), 60
            )
            await temporal.restart()
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
        assert task.status.value == "SUCCESSFUL"
        assert sorted(sim.state()["io_calibration"].values()) == ["READY", "READY"]


async def test_a_verification_schedule_outlives_restarts_and_leaves_with_the_release(
    tmp_path: Path, temporal: RestartableTemporal
) -> None:
    client = await connect(temporal.port)
    queue = "schedule-restart-test"
    with simulation(tmp_path, zones=1, servers_per_zone=1) as sim:
        takeover = Takeover(client, queue, tmp_path, sim, f"sqlite:///{tmp_path / 'metadb.sqlite'}")
        # Production workers (`python worker.py`): they keep the schedules in step with the metadb.
        takeover.env["OB_TAKEOVER_VERIFY_RECONCILE_SECONDS"] = "0.5"
        takeover.spawn()
        try:
            task = await wait_for(await start(client, queue, takeover.body), lambda t: t.status.value != "RUNNING", 90)
            assert task.status.value == "SUCCESSFUL" and task.cluster_id is not None
            cluster_id = task.cluster_id
            schedule_id = verify_schedule_id(cluster_id, queue)

            async def scheduled() -> bool:
                try:
                    await client.get_schedule_handle(schedule_id).describe()
                    return True
                except RPCError as exc:
                    if exc.status != RPCStatusCode.NOT_FOUND:
                        raise
                    return False

            await takeover.until(scheduled, "the schedule of the cluster the takeover brought into management")

            # Everything restarts: the worker stops, Temporal stops and starts again, a new worker starts.
            for worker in takeover.workers:
                worker.terminate()
                worker.wait(15)
            client = await temporal.restart()
            takeover.spawn()
            described = await client.get_schedule_handle(schedule_id).describe()
            action = described.schedule.action
            assert isinstance(action, ScheduleActionStartWorkflow)
            assert (action.workflow, action.task_queue) == (VERIFY_WORKFLOW, queue)
            assert described.schedule.spec.intervals[0].every.total_seconds() == 3600
            # It still verifies the cluster: a run it starts now leaves its report in the metadb.
            assert verifications.latest_report(takeover.db, cluster_id) is None
            await client.get_schedule_handle(schedule_id).trigger()

            async def verified() -> bool:
                return verifications.latest_report(takeover.db, cluster_id) is not None

            await takeover.until(verified, "a verification started by the schedule after the restarts")
            report = verifications.latest_report(takeover.db, cluster_id)
            assert report is not None and report["findings"] == []

            takeovers = TakeoverClient(client, queue, db=takeover.db, vault=takeover.vault)
            release = await (await takeovers.release(cluster_id)).result()
            assert release.status.value == "SUCCESSFUL"

            async def unscheduled() -> bool:
                return not await scheduled()

            await takeover.until(unscheduled, "the schedule deleted once the cluster is released")
        finally:
            takeover.stop()
