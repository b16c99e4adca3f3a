"""Orchestration overhead of the takeover DAG, measured on the Temporal dev server.

Runs, in one process against one dev server: the floor (26 sequential no-op activities) and the full
takeover with instant activities for 1, 3, 30 and 300 servers. Prints a table with wall time, the
ratio to the floor and the number of history events.

    python bench/engine_overhead.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.floor import BenchFloor, bench_noop
from bench.harness import machine, start_dev_server, timed_takeover
from tests.support.fakes import FakeCluster, make_topology
from worker import build_worker

FLOOR_STEPS = 26


async def history_events(client: Client, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return len(history.events)


async def run_floor(client: Client) -> tuple[float, int]:
    queue = f"bench-floor-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[BenchFloor], activities=[bench_noop]):
        workflow_id = f"bench-floor-{uuid.uuid4().hex[:6]}"
        began = time.perf_counter()
        await client.execute_workflow(BenchFloor.run, FLOOR_STEPS, id=workflow_id, task_queue=queue)
        elapsed = time.perf_counter() - began
    return elapsed, await history_events(client, workflow_id)


async def run_takeover(client: Client, zones: int, per_zone: int) -> tuple[float, int, int]:
    queue = f"bench-takeover-{uuid.uuid4().hex[:6]}"
    fake = FakeCluster(topology=make_topology(zones, per_zone))
    async with build_worker(client, activities=fake.activities(), queue=queue):
        run = await timed_takeover(client, queue)
    return run.wall, run.history_events, len(run.task.subtasks)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median is shown")
    args = parser.parse_args()
    os.environ["OB_TAKEOVER_TIMEOUT_SCALE"] = "1"
    env = await start_dev_server(Path(tempfile.mkdtemp(prefix="ob-takeover-overhead-")), pydantic_data_converter)
    try:
        client = env.client
        await run_floor(client)  # warm-up: server caches, worker start-up
        floors = [await run_floor(client) for _ in range(args.repeat)]
        floor = statistics.median(f[0] for f in floors)
        rows = [("floor: 26 sequential no-op activities", floor, floors[0][1], FLOOR_STEPS)]
        for servers, (zones, per_zone) in ((1, (1, 1)), (3, (3, 1)), (30, (3, 10)), (300, (3, 100))):
            repeat = args.repeat if servers < 300 else 1
            runs = [await run_takeover(client, zones, per_zone) for _ in range(repeat)]
            rows.append(
                (
                    f"takeover, {servers} server(s) in {zones} zone(s)",
                    statistics.median(r[0] for r in runs),
                    runs[0][1],
                    runs[0][2],
                )
            )
    finally:
        await env.shutdown()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{machine()}")
    print(f"median of {args.repeat} runs (300 servers: 1 run); bench process peak RSS {peak_mb:.0f} MB\n")
    print(f"| {'run':<42} | {'subtasks':>8} | {'wall s':>7} | {'x floor':>7} | {'history events':>14} |")
    print(f"|{'-' * 44}|{'-' * 10}:|{'-' * 8}:|{'-' * 8}:|{'-' * 15}:|")
    for name, seconds, events, subtasks in rows:
        print(f"| {name:<42} | {subtasks:>8} | {seconds:>7.2f} | {seconds / floor:>7.2f} | {events:>14} |")


if __name__ == "__main__":
    asyncio.run(main())
    # Exit without interpreter teardown: the Temporal SDK can crash at exit (PyGILState_Release).
    sys.stdout.flush()
    os._exit(0)
