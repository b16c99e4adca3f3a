"""The floor the takeover's orchestration is compared with: sequential no-op activities."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
async def bench_noop(step: int) -> int:
    return step


@workflow.defn(name="BenchFloor")
class BenchFloor:
    """As many sequential no-op activities as a one-server takeover has subtasks."""

    @workflow.run
    async def run(self, steps: int) -> int:
        for step in range(steps):
            await workflow.execute_activity(bench_noop, step, start_to_close_timeout=timedelta(seconds=30))
        return steps
