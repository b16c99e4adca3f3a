"""How long one verification of a managed 3x2 cluster takes: a real takeover of a simulated cluster with its
hosts, then `VerifyManagedCluster` (read the cluster, SSH to its six hosts, compare) three times, end to end
through Temporal, and the verification activity's own time.

    python -m bench.verify
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from activities.registry import build_activities
from bench.harness import machine, start_dev_server
from contracts.verification import VerificationResult
from tests.support.driver import start, wait_for
from tests.support.simulator import sim_runtime, simulation, takeover_body
from worker import build_worker
from workflows.verify import VerifyManagedCluster

RUNS = 3


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        env = await start_dev_server(work)
        try:
            with simulation(work / "sim", zones=3, servers_per_zone=2) as sim:
                runtime = sim_runtime(work, sim)
                queue = f"bench-verify-{uuid.uuid4().hex[:8]}"
                async with build_worker(env.client, activities=build_activities(runtime), queue=queue):
                    handle = await start(env.client, queue, takeover_body(sim, runtime))
                    task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
                    assert task.status.value == "SUCCESSFUL" and task.cluster_id is not None
                    print(machine())
                    print("| run | workflow (s) | verification activity (s) | findings |")
                    print("|---:|---:|---:|---:|")
                    for run in range(1, RUNS + 1):
                        began = time.monotonic()
                        result: VerificationResult = await env.client.execute_workflow(
                            VerifyManagedCluster.run,
                            {"clusterId": task.cluster_id},
                            id=f"bench-verify-{uuid.uuid4().hex[:8]}",
                            task_queue=queue,
                        )
                        wall = time.monotonic() - began
                        print(f"| {run} | {wall:.3f} | {result.report.seconds:.3f} | {len(result.report.findings)} |")
                await runtime.pools.close()
        finally:
            await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
