"""A worker killed with SIGKILL mid-subtask: a second worker picks the task up and finishes it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.support.driver import start

ROOT = Path(__file__).resolve().parents[1]


def spawn_worker(address: str, queue: str, marker: Path) -> subprocess.Popen[bytes]:
    log = marker.with_suffix(".log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.engine_worker", address, queue, "reserve_hosts", str(marker)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def test_killed_worker_is_replaced_and_task_completes(
    env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    address = client.service_client.config.target_host
    marker = tmp_path / "started"
    first = spawn_worker(address, task_queue, marker)
    second = None
    try:
        handle = await start(client, task_queue)
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert first.poll() is None, (tmp_path / "started.log").read_text()
            assert time.monotonic() < deadline, "the reserve_hosts subtask never started"
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()
        second = spawn_worker(address, task_queue, tmp_path / "second")
        result = await asyncio.wait_for(handle.result(), timeout=60)
        elapsed = time.monotonic() - killed_at
        reserve = next(s for s in result.subtasks if s.name == "Reserve host")
        assert result.status.value == "SUCCESSFUL"
        assert reserve.run_time == 1  # retried by Temporal within the same subtask run
        assert not (tmp_path / "second").exists()  # the second worker ran attempt 2, not a new first attempt
        # Heartbeat timeout is 30 s x 0.01 scale, floored to 3 s: the crash is noticed in seconds.
        assert elapsed < 20, f"took {elapsed:.1f}s after the kill"
    finally:
        for process in (first, second):
            if process and process.poll() is None:
                process.terminate()
                process.wait(10)
