"""A worker process with stand-in activities, for tests that kill a worker mid-subtask.

Usage: python -m tests.support.engine_worker ADDRESS TASK_QUEUE BLOCK_ACTIVITY MARKER_FILE
The named activity heartbeats forever on its first attempt after writing MARKER_FILE; later attempts
(after the worker was killed) complete at once.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from temporalio import activity

from contracts.messages import SubtaskInput, SubtaskResult
from contracts.settings import load_settings
from tests.support.fakes import FakeCluster, make_topology
from worker import build_worker, connect, serve


def main() -> None:
    address, queue, block_activity, marker = sys.argv[1:5]
    fake = FakeCluster(topology=make_topology(zones=3, servers_per_zone=2))
    activities = fake.activities()
    original = next(a for a in activities if activity._Definition.from_callable(a).name == block_activity)  # type: ignore[union-attr]

    @activity.defn(name=block_activity)
    async def blocking(arg: SubtaskInput) -> SubtaskResult:
        info = activity.info()
        if info.attempt == 1:
            Path(marker).write_text(f"{info.activity_id}\n")
            while True:
                activity.heartbeat()
                await asyncio.sleep(0.1)
        result: SubtaskResult = await original(arg)
        return result

    activities = [blocking if a is original else a for a in activities]

    async def run() -> None:
        client = await connect(
            load_settings().model_copy(update={"temporal_address": address, "temporal_namespace": "default"})
        )
        await serve(build_worker(client, activities=activities, queue=queue))

    asyncio.run(run())


if __name__ == "__main__":
    main()
