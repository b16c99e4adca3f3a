"""A worker process whose activities do no cluster or host work (instant stand-ins), so that a
benchmark measures the engine: Temporal round trips, the workflow's own code and its memory.

    python bench/fake_worker.py ADDRESS TASK_QUEUE ZONES SERVERS_PER_ZONE
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contracts.settings import load_settings
from tests.support.fakes import FakeCluster, make_topology
from worker import build_worker, connect, serve


async def main() -> None:
    address, queue, zones, per_zone = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    logging.basicConfig(level=logging.WARNING)
    fake = FakeCluster(topology=make_topology(zones, per_zone))
    client = await connect(
        load_settings().model_copy(update={"temporal_address": address, "temporal_namespace": "default"})
    )
    await serve(build_worker(client, activities=fake.activities(), queue=queue))


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
