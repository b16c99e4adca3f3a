"""`TakeOverPrecheck`: OCP's takeover precheck as a workflow; it returns the report and writes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.precheck import PrecheckInput, PrecheckReport
    from workflows.request import InvalidRequest, parse_request

PRECHECK_WORKFLOW_NAME = "TakeOverPrecheck"
PRECHECK_TIMEOUT = timedelta(seconds=120)


@workflow.defn(name=PRECHECK_WORKFLOW_NAME)
class TakeOverPrecheck:
    @workflow.run
    async def run(self, body: Any) -> PrecheckReport:
        try:
            request = parse_request(body)
        except InvalidRequest as exc:
            raise ApplicationError(
                str(exc), [e.model_dump() for e in exc.errors], type="InvalidRequest", non_retryable=True
            ) from None
        report: PrecheckReport = await workflow.execute_activity(
            "run_precheck",
            PrecheckInput(request=request),
            result_type=PrecheckReport,
            start_to_close_timeout=PRECHECK_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=2),
            summary=f"Precheck · {request.endpoint}",
        )
        return report
