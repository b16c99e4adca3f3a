"""`TakeOverPrecheck`: OCP's takeover precheck as a workflow; it returns the report and writes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.precheck import PRECHECK_HEARTBEAT_SECONDS, PrecheckInput, PrecheckReport
    from workflows.request import parse_request_or_fail

PRECHECK_WORKFLOW_NAME = "TakeOverPrecheck"
PRECHECK_TIMEOUT = timedelta(seconds=180)
PRECHECK_ATTEMPT = timedelta(seconds=60)


@workflow.defn(name=PRECHECK_WORKFLOW_NAME)
class TakeOverPrecheck:
    @workflow.run
    async def run(self, body: Any) -> PrecheckReport:
        request = parse_request_or_fail(body)
        report: PrecheckReport = await workflow.execute_activity(
            "run_precheck",
            PrecheckInput(request=request),
            result_type=PrecheckReport,
            # An attempt lost with its worker is noticed by its missing heartbeat and runs again.
            schedule_to_close_timeout=PRECHECK_TIMEOUT,
            start_to_close_timeout=PRECHECK_ATTEMPT,
            heartbeat_timeout=timedelta(seconds=PRECHECK_HEARTBEAT_SECONDS),
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary=f"Precheck · {request.endpoint}",
        )
        return report
