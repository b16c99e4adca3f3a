"""`TakeOverPrecheck`: OCP's takeover precheck as a workflow; it returns the report and writes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from contracts.engine import PRECHECK_WORKFLOW
from contracts.messages import PRECHECK_HEARTBEAT_SECONDS, PrecheckInput, PrecheckReport
from contracts.stages import RUN_PRECHECK
from workflows.inputs import parse_request_or_fail

PRECHECK_TIMEOUT = timedelta(seconds=180)
PRECHECK_ATTEMPT = timedelta(seconds=60)


@workflow.defn(name=PRECHECK_WORKFLOW)
class TakeOverPrecheck:
    @workflow.run
    async def run(self, body: Any) -> PrecheckReport:
        request = parse_request_or_fail(body)
        report: PrecheckReport = await workflow.execute_activity(
            RUN_PRECHECK,
            PrecheckInput.of_request(request),
            result_type=PrecheckReport,
            # An attempt lost with its worker is noticed by its missing heartbeat and runs again.
            schedule_to_close_timeout=PRECHECK_TIMEOUT,
            start_to_close_timeout=PRECHECK_ATTEMPT,
            heartbeat_timeout=timedelta(seconds=PRECHECK_HEARTBEAT_SECONDS),
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary=f"Precheck · {request.endpoint}",
        )
        return report
