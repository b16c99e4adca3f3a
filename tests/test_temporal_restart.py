"""The Temporal dev server (SQLite file) stopped and started again in the middle of a takeover: the
worker and the client reconnect and the takeover completes."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.registry import build_activities
from ob_takeover.codec import data_converter
from tests.conftest import binary
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


async def connect(port: int) -> Client:
    deadline = time.monotonic() + 60
    while True:
        try:
            return await Client.connect(f"127.0.0.1:{port}", data_converter=data_converter())
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def test_takeover_survives_a_temporal_restart(tmp_path: Path) -> None:
    port = free_port()
    server = dev_server(tmp_path / "temporal.db", port, tmp_path / "temporal.log")
    try:
        client = await connect(port)
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
                server.terminate()
                server.wait(30)
                await asyncio.sleep(2)
                server = dev_server(tmp_path / "temporal.db", port, tmp_path / "temporal.log")
                await connect(port)
                task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert task.status.value == "SUCCESSFUL"
            assert sorted(sim.state()["io_calibration"].values()) == ["READY", "READY"]
    finally:
        server.terminate()
        server.wait(30)
