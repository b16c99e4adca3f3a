"""Clusters: the takeover precheck, taking a cluster over, the managed clusters, and moving one out."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from temporalio.client import Client

from contracts.errors import ClusterNotFound, FailedPrecondition, TaskConflict
from contracts.messages import PrecheckReport
from contracts.release import ReleaseRequest
from contracts.request import TakeOverRequest
from contracts.stages import RELEASE_TASK_NAME
from contracts.task_view import TaskStatus, TaskView
from metadb import clusters, inventory, tasks, users
from metadb.users import ADMIN
from ob_takeover import tasks as starts
from ob_takeover.api.auth import require
from ob_takeover.api.deps import (
    API,
    Call,
    Contents,
    Id,
    InventoryPageSize,
    ManagerCall,
    PageNumber,
    PageOf,
    ViewerCall,
    answers,
    body_schema,
    json_object,
)
from ob_takeover.api.envelope import ApiError, SubError, invalid, page_of
from ob_takeover.api.inventory import STATUS_FILTER, ObCluster, ObServer, Zone, ob_cluster, ob_server
from ob_takeover.api.routes.tasks import task_view
from ob_takeover.api.takeover_body import authorize_stored_credentials, takeover_request
from ob_takeover.tasks import StartedTask

log = logging.getLogger("ob_takeover.api")

# How long the takeOver call waits for the new task's subtasks before it answers with the task alone.
TASK_WAIT_SECONDS = 3.0
BODY_SCHEMA = body_schema(TakeOverRequest)

router = APIRouter()


@router.post(
    f"{API}/ob/clusters/takeOverPreCheck", openapi_extra=BODY_SCHEMA, summary="takeover precheck",
    responses=answers(PrecheckReport),
)  # fmt: skip
async def precheck(request: Request, call: ManagerCall) -> Response:
    body = takeover_request(await json_object(request), call.trace_id)
    await authorize_stored_credentials(call, body)
    starter = await call.services.starter()
    report = await starts.run_precheck(starter, body, creator=call.user.name, trace_id=call.trace_id)
    return call.ok(report)


@router.post(
    f"{API}/ob/clusters/takeOver", openapi_extra=BODY_SCHEMA, summary="take a cluster over",
    responses=answers(TaskView, conflict=True),
)  # fmt: skip
async def take_over(request: Request, call: ManagerCall) -> Response:
    """Start a takeover; answers the task at once, with its id and the cluster's id from the metadb.

    A root@sys password in the body goes into the password box and the workflow gets a reference to it,
    so the password never enters Temporal's history.
    """
    body = takeover_request(await json_object(request), call.trace_id)
    await authorize_stored_credentials(call, body)
    await call.services.sweep_if_due()
    starter = await call.services.starter()
    try:
        started = await starts.start_takeover(starter, body, creator=call.user.name, trace_id=call.trace_id)
    except TaskConflict as exc:
        raise ApiError(409, str(exc)) from None
    log.info("trace %s: %s started task %s (%s) for %s", call.trace_id, call.user.name, started.task_id,
             started.workflow_id, body.endpoint)  # fmt: skip
    return call.ok(await _new_task(starter.client, started, call.user.name))


async def _new_task(client: Client, started: StartedTask, creator: str, name: str | None = None) -> TaskView:
    """A task just started, once it shows its subtasks or ends; as it is after TASK_WAIT_SECONDS otherwise."""
    deadline = time.monotonic() + TASK_WAIT_SECONDS
    run_id = started.handle.result_run_id
    while True:
        view = await task_view(client, started.workflow_id, run_id, started.task_id, started.cluster_id, creator, name)
        if view.subtasks or view.status is not TaskStatus.RUNNING or time.monotonic() > deadline:
            return view
        await asyncio.sleep(0.1)


@router.get(
    f"{API}/ob/clusters",
    summary="managed clusters (OCP's ObCluster)",
    responses=answers(PageOf[ObCluster]),
)
async def list_clusters(
    call: ViewerCall,
    name: str | None = Query(None, max_length=128, description="a keyword of the name, any case"),
    status: str | None = Query(None, max_length=256, description="comma-separated: TAKINGOVER, RUNNING, MOVINGOUT"),
    sort: str | None = Query(
        None, max_length=64, pattern=inventory.sort_pattern(inventory.CLUSTER_SORTS), description="FIELD[,asc|desc]"
    ),
    page: PageNumber = 1,
    size: InventoryPageSize = 10,
) -> Response:
    number = page
    statuses = [STATUS_FILTER.get(s.strip(), s.strip()) for s in (status or "").split(",") if s.strip()]
    try:
        found, total = await call.services.metadb(
            inventory.cluster_page, call.services.db, name=name, statuses=statuses, sort=sort,
            offset=(number - 1) * size, limit=size,
        )  # fmt: skip
    except ValueError as exc:
        raise ApiError(400, str(exc), sub_errors=[SubError(field="sort", message=str(exc))]) from None
    return call.ok(page_of([ob_cluster(c) for c in found], number, size, total))


async def _inventory(call: Call, cluster_id: int) -> inventory.ClusterInventory:
    found = await call.services.metadb(inventory.cluster_inventory, call.services.db, cluster_id)
    if found is None:
        raise ApiError(404, f"cluster {cluster_id} does not exist")
    return found  # type: ignore[no-any-return]


@router.get(f"{API}/ob/clusters/{{cluster_id:int}}", summary="a managed cluster", responses=answers(ObCluster))
async def get_cluster(cluster_id: Id, call: ViewerCall) -> Response:
    return call.ok(ob_cluster(await _inventory(call, cluster_id)))


@router.get(
    f"{API}/ob/clusters/{{cluster_id:int}}/zones", summary="a cluster's zones, with their servers",
    responses=answers(Contents[Zone]),
)  # fmt: skip
async def list_zones(cluster_id: Id, call: ViewerCall) -> Response:
    return call.ok({"contents": ob_cluster(await _inventory(call, cluster_id)).zones})


@router.get(
    f"{API}/ob/clusters/{{cluster_id:int}}/servers", summary="a cluster's OBServer nodes",
    responses=answers(Contents[ObServer]),
)  # fmt: skip
async def list_servers(
    cluster_id: Id,
    call: ViewerCall,
    region_name: str | None = Query(None, alias="regionName", max_length=128),
    idc_name: str | None = Query(None, alias="idcName", max_length=128),
) -> Response:
    found = await _inventory(call, cluster_id)
    servers = [ob_server(found, row) for row in found.servers]
    wanted = [s for s in servers if region_name in (None, s.region_name) and idc_name in (None, s.idc_name)]
    return call.ok({"contents": wanted})


class MoveOutBody(BaseModel):
    """OCP's moveOut body. `targetConfigAddress` is the obconfig_url to leave (default: the one from before
    the takeover). The other fields are OCP's; the values that would keep what a release removes are
    refused rather than ignored."""

    model_config = {"extra": "forbid"}

    targetConfigAddress: str | None = Field(default=None, max_length=2048)
    # What OCP's clients send; the document says which values a release takes.
    deleteHost: bool = Field(True, json_schema_extra={"const": True})
    deleteHostIds: list[int] = Field(default_factory=list, json_schema_extra={"maxItems": 0})
    skipOperationHostIds: list[int] = Field(default_factory=list, json_schema_extra={"maxItems": 0})
    force: bool = Field(False, json_schema_extra={"const": False})
    retainClusterInfo: bool = Field(False, json_schema_extra={"const": False})


@router.post(
    f"{API}/ob/clusters/{{cluster_id:int}}/moveOut", summary="move a cluster out of management",
    openapi_extra=body_schema(MoveOutBody, required=False), responses=answers(TaskView, conflict=True),
)  # fmt: skip
async def move_out(cluster_id: Id, request: Request, call: ManagerCall) -> Response:
    """Start releasing a managed cluster (`ReleaseCluster`): its takeover's work undone, data untouched, the
    proxyro password left as it is. Answers the release task."""
    raw = await json_object(request) if (await request.body()).strip() else {}
    release = _release_request(call, cluster_id, raw)
    await _may_release(call, cluster_id)
    starter = await call.services.starter()
    try:
        started = await starts.start_release(starter, release, creator=call.user.name, trace_id=call.trace_id)
    except ClusterNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except (FailedPrecondition, TaskConflict) as exc:
        raise ApiError(409, str(exc)) from None
    log.info("trace %s: %s started task %s (%s) for cluster %s", call.trace_id, call.user.name, started.task_id,
             started.workflow_id, cluster_id)  # fmt: skip
    return call.ok(await _new_task(starter.client, started, call.user.name, RELEASE_TASK_NAME))


async def _may_release(call: Call, cluster_id: int) -> None:
    """A release logs in with the root@sys password the password box holds, which the caller never gave: an
    ADMIN's call, or the call of whoever started the takeover that brought the cluster into management."""
    if users.role_allows(call.user.role, ADMIN):
        return
    row = await call.services.metadb(clusters.get_cluster, call.services.db, cluster_id)
    if row is None:
        return  # answered 404 by the release itself
    takeover = await call.services.metadb(tasks.get_task, call.services.db, int(row["task_id"]))
    if takeover is None or takeover.get("creator") != call.user.name:
        raise ApiError(
            403,
            f"user {call.user.name} ({call.user.role}) may not move cluster {cluster_id} out: it needs {ADMIN}, "
            "or to have started its takeover",
        )


def _release_request(call: Call, cluster_id: int, raw: dict[str, Any]) -> ReleaseRequest:
    """The moveOut body as the release's input; a 400 for the values a release cannot honour."""
    try:
        body = MoveOutBody.model_validate(raw)
    except ValidationError as exc:
        raise invalid(exc.errors(include_input=False)) from None
    kept = [
        name
        for name, keeps in (
            ("deleteHost", not body.deleteHost),
            ("deleteHostIds", bool(body.deleteHostIds)),
            ("retainClusterInfo", body.retainClusterInfo),
            ("force", body.force),
            ("skipOperationHostIds", bool(body.skipOperationHostIds)),
        )
        if keeps
    ]
    if kept:
        message = "not supported: a release always removes what the takeover created"
        raise invalid([{"loc": (name,), "msg": message} for name in kept])
    if "targetConfigAddress" in raw:
        # The cluster's servers will fetch their root service list from it (or from none, for ""): pointing
        # them elsewhere is an administrator's call, as using a stored root password for another purpose is.
        require(call.user, ADMIN)
    try:
        return ReleaseRequest(cluster_id=cluster_id, config_url=body.targetConfigAddress)
    except ValidationError as exc:
        raise invalid([{**e, "loc": ("targetConfigAddress",)} for e in exc.errors(include_input=False)]) from None
