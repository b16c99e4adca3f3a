"""What the workflow engine costs per takeover, by workflow runner and by the server's eager activity dispatch.

    python bench/engine_cost.py [--takeovers 8] [--zones 3] [--per-zone 2]

For each dev server (as shipped, and with `system.enableActivityEagerExecution`) and each workflow runner
(the shipped sandbox, which re-imports the workflows' modules for every run and checks them; the sandbox with
the `workflows` package passed through as well; no sandbox), a fresh worker of instant stand-in activities
takes a warm-up takeover, then `--takeovers` takeovers one after the other. The payloads are encrypted as in
production. Prints, per row: the median wall time of one takeover, the CPU seconds per takeover of this
process (the worker and the client that starts the takeovers and reads their results) and of the Temporal
server, and the workflow tasks that timed out (a sticky queue's task not picked up within 3 s is one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import cpu_by_program, machine, start_dev_server, workflow_task_timeouts
from tests.support.fakes import FakeCluster, make_topology
from worker import build_worker
from workflows.sandbox import workflow_runner
from workflows.takeover import TakeOverCluster


def _workflows_passed_through() -> WorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("contracts", "opentelemetry", "workflows")
    )


RUNNERS: dict[str, Callable[[], WorkflowRunner]] = {
    "sandbox (shipped)": workflow_runner,
    "sandbox, workflows passed through": _workflows_passed_through,
    "no sandbox": UnsandboxedWorkflowRunner,
}
SERVERS: dict[str, dict[str, str]] = {
    "as shipped": {},
    "eager activities": {"system.enableActivityEagerExecution": "true"},
}


@dataclass
class Row:
    server: str
    runner: str
    wall: float
    worker_cpu: float
    temporal_cpu: float
    events: int
    task_timeouts: int


async def takeovers(client: Client, runner: str, server: str, count: int, zones: int, per_zone: int) -> Row:
    queue = f"bench-cost-{uuid.uuid4().hex[:6]}"
    fake = FakeCluster(topology=make_topology(zones, per_zone))
    body = {"rootSysPassword": "bench", "address": "127.0.0.1", "port": 2881}
    ids: list[str] = []
    walls: list[float] = []
    async with build_worker(client, activities=fake.activities(), queue=queue, runner=RUNNERS[runner]()):

        async def one() -> None:
            workflow_id = f"bench-cost-{uuid.uuid4().hex[:8]}"
            began = time.perf_counter()
            task = await client.execute_workflow(TakeOverCluster.run, body, id=workflow_id, task_queue=queue)
            walls.append(time.perf_counter() - began)
            assert task.status.value == "SUCCESSFUL", task.status
            ids.append(workflow_id)

        await one()  # warm-up: the runner's first import of the workflows, the server's caches
        walls.clear()
        ids.clear()
        cpu, temporal = time.process_time(), cpu_by_program().get("temporal", 0.0)
        for _ in range(count):
            await one()
        cpu, temporal = time.process_time() - cpu, cpu_by_program().get("temporal", 0.0) - temporal
    events, timeouts = 0, 0
    for workflow_id in ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        events = max(events, len(history.events))
        timeouts += workflow_task_timeouts(history)
    return Row(server, runner, statistics.median(walls), cpu / count, temporal / count, events, timeouts)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takeovers", type=int, default=8, help="measured takeovers per row")
    parser.add_argument("--zones", type=int, default=3)
    parser.add_argument("--per-zone", type=int, default=2)
    args = parser.parse_args()
    os.environ["OB_TAKEOVER_TIMEOUT_SCALE"] = "1"
    rows: list[Row] = []
    for server, dynamic_config in SERVERS.items():
        env = await start_dev_server(Path(tempfile.mkdtemp(prefix="ob-takeover-cost-")), dynamic_config=dynamic_config)
        try:
            for runner in RUNNERS:
                rows.append(await takeovers(env.client, runner, server, args.takeovers, args.zones, args.per_zone))
        finally:
            await env.shutdown()
    print(f"\n{machine()}; {args.zones} zones x {args.per_zone} servers, instant activities, encrypted payloads")
    print(f"{args.takeovers} takeovers one after the other per row (after one warm-up); wall: median\n")
    print(
        "| dev server | workflow runner | wall s | CPU s per takeover: worker + client | Temporal "
        "| history events | workflow task timeouts |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.server} | {row.runner} | {row.wall:.2f} | {row.worker_cpu:.3f} | {row.temporal_cpu:.3f} "
            f"| {row.events} | {row.task_timeouts} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
    # Exit without interpreter teardown: the Temporal SDK can crash at exit (PyGILState_Release).
    sys.stdout.flush()
    os._exit(0)
