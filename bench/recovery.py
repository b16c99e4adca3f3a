"""Recovery: how long a takeover stands still when the worker running a subtask is killed (SIGKILL)
and a new one is started at once. Production worker processes (`python worker.py`), production
timeouts, a simulated 3-zone x 2-server cluster with its hosts, one dev server.

    python bench/recovery.py

For three subtasks (a short one, one of 60 s and the io calibration), prints the time from the kill
until the subtask's next attempt runs on the new worker (target: 10 s) and until the subtask is done.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.testing import WorkflowEnvironment

from bench.harness import machine, start_dev_server
from contracts.stages import SUBTASKS
from tests.support.crash import SLOWDOWNS, Takeover, slow_down
from tests.support.driver import Handle, named, start, wait_for
from tests.support.simulator import simulation

# Kill to the next attempt: at most 10 s for every subtask.
TARGET_SECONDS = 10.0

CASES = ("Prepare take over cluster", "Register config url", "Run io calibration")


async def next_attempt_running(handle: Handle, subtask_ids: set[int], timeout: float = 120) -> None:
    """Until one of the subtask's activities runs an attempt after the first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            subtask_id = int(pending.activity_id.split("-")[0])
            started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            if subtask_id in subtask_ids and pending.attempt >= 2 and started:
                return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no second attempt of subtasks {sorted(subtask_ids)} seen running within {timeout:.0f}s")


async def one_case(env: WorkflowEnvironment, work: Path, name: str) -> tuple[float, float, float]:
    client = env.client
    queue = f"bench-recovery-{uuid.uuid4().hex[:6]}"
    with simulation(work / queue) as sim:
        takeover = Takeover(client, queue, work / queue, sim, f"sqlite:///{work / queue / 'metadb.sqlite'}", 1)
        try:
            slow_down(name, SLOWDOWNS[name], sim, takeover.metadb_url)
            takeover.spawn()
            handle = await start(client, queue, takeover.body)
            task = await wait_for(handle, lambda t: any(s.status.value == "RUNNING" for s in named(t, name)), 120)
            killed = await takeover.kill_and_replace()
            # The next attempt (after the heartbeat timeout) is slowed too, so that it is seen running.
            slow_down(name, SLOWDOWNS[name], sim, takeover.metadb_url)
            await next_attempt_running(handle, {s.id for s in named(task, name)})
            resumed = time.monotonic() - killed
            await wait_for(handle, lambda t: all(s.status.value == "SUCCESSFUL" for s in named(t, name)), 120)
            done = time.monotonic() - killed
            final = await wait_for(handle, lambda t: t.status.value != "RUNNING", 300)
            assert final.status.value == "SUCCESSFUL", takeover.last_log()
        finally:
            takeover.stop()
    stage = next(s for s in SUBTASKS if s.name == name)
    return stage.heartbeat_timeout, resumed, done


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ob-takeover-recovery-"))
    env = await start_dev_server(work)
    try:
        rows = [(name, *await one_case(env, work, name)) for name in CASES]
    finally:
        await env.shutdown()
    print(f"\n{machine()}\n")
    print("| subtask killed | heartbeat timeout s | kill → next attempt runs s | target s | kill → subtask done s |")
    print("|---|---:|---:|---:|---:|")
    for name, heartbeat, resumed, done in rows:
        met = "met" if resumed <= TARGET_SECONDS else "MISSED"
        print(f"| {name} | {heartbeat:.0f} | {resumed:.1f} | ≤ {TARGET_SECONDS:.0f} ({met}) | {done:.1f} |")


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
