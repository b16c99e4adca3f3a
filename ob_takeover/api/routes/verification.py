"""A managed cluster's verification: its latest drift report, and starting one (with a repair, if asked)."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from temporalio.client import WorkflowFailureError, WorkflowQueryFailedError

from contracts.errors import ClusterNotFound, FailedPrecondition, TaskConflict, innermost_message
from contracts.verification import VerificationReport, VerificationResult, VerifyRequest
from metadb import verifications
from ob_takeover import tasks as starts
from ob_takeover.api.deps import API, Id, ManagerCall, ViewerCall, answers, body_schema, json_object
from ob_takeover.api.envelope import ApiError, invalid
from workflows.verify import VerifyManagedCluster

log = logging.getLogger("ob_takeover.api")

# How long a POST waits for the verification (or, with a repair, for its task to exist) before a 409.
VERIFY_WAIT_SECONDS = 60.0

router = APIRouter()


class VerifyBody(BaseModel):
    """`{"repair": true}` runs the subtasks that put the drift right, as a task; default: report only."""

    model_config = {"extra": "forbid"}

    repair: bool = False


@router.get(
    f"{API}/ob/clusters/{{cluster_id:int}}/verification", summary="a managed cluster's latest verification",
    responses=answers(VerificationReport),
)  # fmt: skip
async def latest_verification(cluster_id: Id, call: ViewerCall) -> Response:
    report = await call.services.metadb(verifications.latest_report, call.services.db, cluster_id)
    if report is None:
        raise ApiError(404, f"cluster {cluster_id} has not been verified")
    return call.ok(VerificationReport.model_validate(report))


@router.post(
    f"{API}/ob/clusters/{{cluster_id:int}}/verification", summary="verify a managed cluster (and repair it)",
    openapi_extra=body_schema(VerifyBody, required=False), responses=answers(VerificationResult, conflict=True),
)  # fmt: skip
async def verify(cluster_id: Id, request: Request, call: ManagerCall) -> Response:
    """Verify the cluster now and answer the report; with `repair`, answer the report and the repair task as
    soon as it starts (follow it with `GET /api/v2/tasks/{id}`)."""
    raw = await json_object(request) if (await request.body()).strip() else {}
    try:
        body = VerifyBody.model_validate(raw)
    except ValidationError as exc:
        raise invalid(exc.errors(include_input=False)) from None
    starter = await call.services.starter()
    try:
        handle = await starts.start_verification(
            starter, VerifyRequest(cluster_id=cluster_id, repair=body.repair), creator=call.user.name,
            trace_id=call.trace_id,
        )  # fmt: skip
    except ClusterNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except (FailedPrecondition, TaskConflict) as exc:
        raise ApiError(409, str(exc)) from None
    log.info("trace %s: %s started %s for cluster %s", call.trace_id, call.user.name, handle.id, cluster_id)
    deadline = time.monotonic() + VERIFY_WAIT_SECONDS
    try:
        while body.repair and time.monotonic() < deadline:
            description = await handle.describe()
            if description.status is not None and description.status.name != "RUNNING":
                break
            try:
                report = await handle.query(VerifyManagedCluster.report)
                task = await handle.query(VerifyManagedCluster.task)
                return call.ok(VerificationResult(report=report, repair_task=task))
            except WorkflowQueryFailedError:
                await asyncio.sleep(0.2)
        result = await asyncio.wait_for(handle.result(), max(deadline - time.monotonic(), 1.0))
    except WorkflowFailureError as exc:
        raise ApiError(409, innermost_message(exc)) from None
    except TimeoutError:
        raise ApiError(409, f"the verification {handle.id} did not answer within {VERIFY_WAIT_SECONDS:.0f}s") from None
    return call.ok(result)
