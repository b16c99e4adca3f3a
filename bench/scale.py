"""Scale: one takeover of a cluster of 3, 30 and 300 servers, each on a fresh worker process whose
activities are instant stand-ins (bench/fake_worker.py), against one dev server.

    python bench/scale.py [--sizes 3,30,300,1000]

Prints, per size: subtasks, wall time, history events (Temporal warns at 10,240 and refuses more than
51,200), the task JSON's size, the largest payload as Temporal stores it (compressed and encrypted by the
codec; Temporal warns at 512 KB and refuses 2 MB) and the worker process's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench.harness import machine, peak_rss_mb, start_dev_server, timed_takeover

ROOT = Path(__file__).resolve().parents[1]


async def wait_for_poller(client: Client, queue: str) -> None:
    """Until a worker polls `queue`: the wall times leave out the worker's start-up."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    while not (await client.workflow_service.describe_task_queue(request)).pollers:
        await asyncio.sleep(0.1)


async def one_size(client: Client, servers: int) -> tuple[int, float, int, int, int, float]:
    zones, per_zone = 3, max(servers // 3, 1)
    queue = f"bench-scale-{uuid.uuid4().hex[:6]}"
    address = client.service_client.config.target_host
    worker = subprocess.Popen(
        [sys.executable, "bench/fake_worker.py", address, queue, str(zones), str(per_zone)], cwd=ROOT
    )
    try:
        await wait_for_poller(client, queue)
        run = await timed_takeover(client, queue)
        rss = peak_rss_mb(worker.pid)
    finally:
        worker.terminate()
        worker.wait(30)
    size = len(json.dumps(run.task.model_dump(mode="json", by_alias=True)))
    return len(run.task.subtasks), run.wall, run.history_events, size, run.largest_payload, rss


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="3,30,300,1000")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ob-takeover-scale-"))
    env = await start_dev_server(work)
    try:
        await one_size(env.client, 3)  # warm-up: server caches
        rows = [(servers, *await one_size(env.client, servers)) for servers in map(int, args.sizes.split(","))]
    finally:
        await env.shutdown()
    print(f"\n{machine()}\n")
    print(
        "| servers (3 zones) | subtasks | wall s | history events | task JSON KB | largest payload KB (stored) "
        "| worker peak RSS MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for servers, subtasks, wall, events, size, largest, rss in rows:
        print(
            f"| {servers} | {subtasks} | {wall:.2f} | {events} | {size / 1024:.0f} | {largest / 1024:.0f} | {rss:.0f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
