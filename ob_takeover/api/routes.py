"""OCP's REST API (`/api/v2/…`) on the takeover workflows: every call maps onto a workflow, a query, an
update or the metadb. Roles as in OCP: ADMIN (everything, users' credentials and host types),
TASK_MANAGER (start and operate takeovers and prechecks), TASK_VIEWER (read tasks and logs)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.release_work import describe_managed_cluster
from contracts.engine import (
    CANCEL_SUBTASK_UPDATE,
    MEMO_CLUSTER_ID,
    MEMO_CREATOR,
    MEMO_TASK_ID,
    MEMO_TRACE_ID,
    RETRY_SUBTASK_UPDATE,
    RETRY_UPDATE,
    ROLLBACK_UPDATE,
    SKIP_SUBTASK_UPDATE,
    SUBTASK_LOG_QUERY,
    TASK_QUERY,
    release_workflow_id_for,
    workflow_id_for,
)
from contracts.errors import FailedPrecondition
from contracts.messages import PrecheckReport, SubtaskRef
from contracts.release import ReleaseRequest
from contracts.request import HostInfo, InvalidRequest, TakeOverRequest, parse_request
from contracts.settings import Settings
from contracts.stages import RELEASE_TASK_NAME
from contracts.task_view import Operation, TaskStatus, TaskView, task_name
from contracts.topology import ClusterEndpoint
from metadb import clusters, credentials, hosts, ids, tasks
from metadb.db import Database
from metadb.users import ADMIN, TASK_MANAGER, TASK_VIEWER
from metadb.vault import Vault
from ob_takeover.api.auth import Authenticator, User, require
from ob_takeover.api.envelope import ApiError, SubError, invalid, now_iso, page_of, paged, success
from ob_takeover.connection import ui_link
from workflows.precheck import TakeOverPrecheck
from workflows.release import ReleaseCluster
from workflows.takeover import TakeOverCluster

log = logging.getLogger("ob_takeover.api")

API = "/api/v2"
# OCP's API level this implements; `/info` answers it, then this project's version, as buildVersion.
OCP_API_LEVEL = "4.3.4"
# How long the takeOver call waits for the new task's subtasks before it answers with the task alone.
TASK_WAIT_SECONDS = 3.0
SECRET_FIELDS = {"rootSysPassword", "proxyroPassword", "passphrase", "privateKey", "password"}


@dataclass
class Services:
    """What the API works with: settings, metadb, password box, users and (connected on first use) Temporal."""

    settings: Settings
    db: Database
    vault: Vault
    auth: Authenticator
    connect: Callable[[], Awaitable[Client]]
    _client: Client | None = None
    _lock: asyncio.Lock | None = None

    async def temporal(self) -> Client:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await self.connect()
                except Exception as exc:
                    raise ApiError(503, f"Temporal is unreachable ({type(exc).__name__}); try again") from None
        return self._client

    async def metadb(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A metadb call, off the event loop."""
        return await asyncio.to_thread(work, *args, **kwargs)


@dataclass
class Call:
    """One API call: who makes it, its trace id, and what it works with."""

    user: User
    trace_id: str
    began: float
    services: Services

    def ok(self, data: Any = None) -> Response:
        return success(data, trace_id=self.trace_id, began=self.began)


def _call(role: str) -> Callable[[Request], Awaitable[Call]]:
    async def authenticated(request: Request) -> Call:
        services: Services = request.app.state.services
        client = request.client.host if request.client else "unknown"
        user = await services.auth.user(request.headers.get("Authorization"), client)
        request.state.user = user.name
        require(user, role)
        return Call(user, request.state.trace_id, request.state.began, services)

    return authenticated


# Ids are positive 64-bit integers; anything else is a 400 naming the parameter.
MAX_ID = 2**63 - 1
Id = Annotated[int, FastApiPath(ge=1, le=MAX_ID)]
viewer = Depends(_call(TASK_VIEWER))
manager = Depends(_call(TASK_MANAGER))
admin = Depends(_call(ADMIN))
router = APIRouter()


# --- bodies ----------------------------------------------------------------------------------------


async def json_object(request: Request) -> dict[str, Any]:
    """The JSON object in the body, whatever Content-Type says; 400 otherwise."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _fields(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def takeover_request(body: dict[str, Any], trace_id: str) -> TakeOverRequest:
    """The body as a takeover request: fields OCP does not document are dropped and logged (as OCP does);
    a body that breaks a rule is a 400 naming every field, with the value unless it is a secret."""
    known = _fields(TakeOverRequest)
    dropped = sorted(set(body) - known)
    # A known field in the wrong case is a typo, not an extension: it must not fall back to a default.
    typos = [
        SubError(field=k, message=f"unknown field; did you mean {f}?")
        for k in dropped
        for f in known
        if k.lower() == f.lower()
    ]
    if typos:
        raise ApiError(400, "; ".join(f"{e.field}: {e.message}" for e in typos), sub_errors=typos)
    clean = {k: v for k, v in body.items() if k not in dropped}
    host_info = clean.get("hostInfo")
    if isinstance(host_info, dict):
        extra = sorted(set(host_info) - _fields(HostInfo))
        dropped += [f"hostInfo.{k}" for k in extra]
        clean["hostInfo"] = {k: v for k, v in host_info.items() if k not in extra}
    if dropped:
        log.info("trace %s: ignored fields OCP does not document: %s", trace_id, ", ".join(dropped))
    try:
        return parse_request(clean)
    except InvalidRequest as exc:
        raise ApiError(
            400,
            str(exc),
            sub_errors=[
                SubError(field=e.field, message=e.message, rejected_value=_value(clean, e.field)) for e in exc.errors
            ],
        ) from None


def refuse_stored_root_credential(call: Call, body: TakeOverRequest) -> None:
    """A stored root@sys credential logs in wherever the body's address points: only an ADMIN may use one."""
    if body.root_sys_credential_id is not None or body.proxyro_credential_id is not None:
        require(call.user, ADMIN)


def _value(body: dict[str, Any], path: str) -> Any:
    """The submitted value of a field, for the error's rejectedValue; never a secret or a structure."""
    value: Any = body
    for part in path.split("."):
        if part in SECRET_FIELDS or not isinstance(value, dict):
            return None
        value = value.get(part)
    return value if isinstance(value, str | int | float | bool) else None


# --- system ----------------------------------------------------------------------------------------


@router.get(f"{API}/time", response_class=PlainTextResponse, summary="server time (anonymous)")
async def server_time() -> PlainTextResponse:
    return PlainTextResponse(now_iso())


class Info(BaseModel):
    name: str
    group: str
    artifact: str
    build_time: str = Field(alias="buildTime")
    build_version: str = Field(alias="buildVersion")
    build_java_version: str = Field(alias="buildJavaVersion")
    spring_boot_version: str = Field(alias="springBootVersion")


@router.get(f"{API}/info", summary="version (the bare object, as OCP answers it)", response_model=Info)
async def info(call: Call = viewer) -> dict[str, str]:
    version = metadata.version("ob-takeover")
    return {
        "artifact": "ob-takeover",
        "buildJavaVersion": "-",
        "buildTime": "-",
        "buildVersion": f"{OCP_API_LEVEL}_{version}",
        "group": "ob-takeover",
        "name": "ob-takeover",
        "springBootVersion": "-",
    }


# --- takeover and precheck -------------------------------------------------------------------------


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint that parses its JSON body itself."""
    return {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema(by_alias=True)}}}}


BODY_SCHEMA = body_schema(TakeOverRequest)


@router.post(f"{API}/ob/clusters/takeOverPreCheck", openapi_extra=BODY_SCHEMA, summary="takeover precheck")
async def precheck(request: Request, call: Call = manager) -> Response:
    body = takeover_request(await json_object(request), call.trace_id)
    refuse_stored_root_credential(call, body)
    services = call.services
    client = await services.temporal()
    # The passwords reach the worker through the password box, for the precheck's time only.
    start, stored = await services.metadb(_passwords_to_box, services, body, f"precheck {call.trace_id}", None, None)
    try:
        report: PrecheckReport = await client.execute_workflow(
            TakeOverPrecheck.run,
            start,
            id=f"precheck-{body.address}-{body.port}-{call.trace_id[:8]}",
            task_queue=services.settings.task_queue,
            memo={MEMO_CREATOR: call.user.name, MEMO_TRACE_ID: call.trace_id},
        )
    finally:
        for credential_id in stored:
            await services.metadb(credentials.delete_credential, services.db, credential_id)
    return call.ok(report)


@router.post(f"{API}/ob/clusters/takeOver", openapi_extra=BODY_SCHEMA, summary="take a cluster over")
async def take_over(request: Request, call: Call = manager) -> Response:
    """Start a takeover; answers the task at once, with its id and the cluster's id from the metadb.

    A root@sys password in the body goes into the password box and the workflow gets a reference to it,
    so the password never enters Temporal's history.
    """
    body = takeover_request(await json_object(request), call.trace_id)
    refuse_stored_root_credential(call, body)
    services = call.services
    client = await services.temporal()
    workflow_id = workflow_id_for(body.address, body.port)
    await _refuse_if_taken(services, client, body, workflow_id)
    task_id, cluster_id = await services.metadb(_allocate, services, body, workflow_id, call)
    start, stored = await services.metadb(_passwords_to_box, services, body, f"task {task_id}", task_id, cluster_id)
    try:
        handle = await client.start_workflow(
            TakeOverCluster.run,
            start,
            id=workflow_id,
            task_queue=services.settings.task_queue,
            memo={
                MEMO_CREATOR: call.user.name,
                MEMO_TRACE_ID: call.trace_id,
                MEMO_TASK_ID: task_id,
                MEMO_CLUSTER_ID: cluster_id,
            },
        )
    except BaseException as exc:
        await services.metadb(tasks.record_task, services.db, task_id=task_id, workflow_id=workflow_id, run_id="",
                              name=task_name(False), status="REJECTED")  # fmt: skip
        for credential_id in stored:
            await services.metadb(credentials.delete_credential, services.db, credential_id)
        if isinstance(exc, WorkflowAlreadyStartedError):
            message = f"cluster {body.endpoint} is being taken over by another task ({workflow_id})"
            raise ApiError(409, message) from None
        raise
    await services.metadb(
        tasks.record_task, services.db, task_id=task_id, workflow_id=workflow_id, run_id=handle.result_run_id or "",
        name=task_name(False), status="RUNNING",
    )  # fmt: skip
    log.info(
        "trace %s: %s started task %s (%s) for %s", call.trace_id, call.user.name, task_id, workflow_id, body.endpoint
    )
    deadline = time.monotonic() + TASK_WAIT_SECONDS
    while True:
        view = await _task_view(client, workflow_id, handle.result_run_id, task_id, cluster_id, call.user.name)
        if view.subtasks or view.status is not TaskStatus.RUNNING or time.monotonic() > deadline:
            return call.ok(view)
        await asyncio.sleep(0.1)


async def _refuse_if_taken(services: Services, client: Client, body: TakeOverRequest, workflow_id: str) -> None:
    """409 when a takeover of the endpoint runs, or the cluster at the endpoint is managed already."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
        if description.status == WorkflowExecutionStatus.RUNNING:
            row = await services.metadb(tasks.latest_task_of, services.db, workflow_id)
            holder = f"task {row['task_id']}" if row else "a task"
            raise ApiError(409, f"cluster {body.endpoint} is being taken over by {holder} ({workflow_id})")
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    for row in await services.metadb(clusters.list_clusters, services.db):
        if (row["address"], int(row["port"])) == (body.address, body.port) and row["status"] == clusters.RUNNING:
            raise ApiError(
                409,
                f"cluster {row['name']} at {body.endpoint} is already managed here as cluster {row['id']}",
            )


def _allocate(services: Services, body: TakeOverRequest, workflow_id: str, call: Call) -> tuple[int, int]:
    task_id = ids.allocate_task_id(services.db)
    cluster_id = ids.allocate_cluster_id(services.db)
    tasks.record_task(
        services.db, task_id=task_id, workflow_id=workflow_id, run_id="", name=task_name(False), status="RUNNING",
        cluster_id=cluster_id, creator=call.user.name, trace_id=call.trace_id,
    )  # fmt: skip
    return task_id, cluster_id


def _passwords_to_box(
    services: Services, body: TakeOverRequest, owner: str, task_id: int | None, cluster_id: int | None
) -> tuple[dict[str, Any], list[int]]:
    """The workflow input for `body` with its passwords put in the password box (under names of `owner`'s
    own, so a concurrent request cannot replace them) and referenced instead; and the credentials made."""
    start = body.model_dump(mode="json", exclude_none=True)
    stored = []
    for field, reference, user in (
        ("rootSysPassword", "rootSysCredentialId", "root@sys"),
        ("proxyroPassword", "proxyroCredentialId", "proxyro"),
    ):
        if field in start:
            start[reference] = credentials.save_credential(
                services.db,
                services.vault,
                kind=credentials.CLUSTER,
                name=f"{owner}: {user} of {body.endpoint}",
                username=user,
                secret=start.pop(field),
                cluster_id=cluster_id,
                created_by_task_id=task_id,
                endpoints=[ClusterEndpoint.from_request(body).where],
            )
            stored.append(start[reference])
    return start, stored


def _of_task(view: TaskView, task_id: int, workflow_id: str) -> TaskView:
    """`view` if it is task `task_id`'s: a task recorded without its run could meet a later takeover's."""
    if view.id != task_id:
        raise ApiError(404, f"task {task_id}: its run of {workflow_id} is no longer known; task {view.id} ran since")
    return view


async def _task_view(
    client: Client,
    workflow_id: str,
    run_id: str | None,
    task_id: int,
    cluster_id: int | None,
    creator: str | None,
    name: str | None = None,
) -> TaskView:
    """The task as its workflow shows it; before its subtasks exist (the topology is being read), or when
    its workflow ended before they did (a wrong password), the task alone, RUNNING or FAILED."""
    handle: WorkflowHandle[Any, TaskView] = client.get_workflow_handle(
        workflow_id, run_id=run_id or None, result_type=TaskView
    )
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ApiError(404, f"task {task_id}: its workflow {workflow_id} no longer exists") from None
        raise
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return _of_task(await handle.result(), task_id, workflow_id)
    try:
        view: TaskView = await handle.query(TASK_QUERY, result_type=TaskView)
        return _of_task(view, task_id, workflow_id)
    except Exception:  # "task not ready" while the topology is read, or the workflow failed before the task existed
        running = description.status == WorkflowExecutionStatus.RUNNING
        status = TaskStatus.RUNNING if running else TaskStatus.FAILED
    return _task_alone(task_id, name or task_name(False), cluster_id, creator, now_iso(), status)


def _task_alone(
    task_id: int, name: str, cluster_id: int | None, creator: str | None, created: str, status: TaskStatus
) -> TaskView:
    """A task without its subtasks, for when its workflow cannot show them."""
    return TaskView(
        id=task_id, name=name, cluster_id=cluster_id, creator=creator or "temporal", executor="ob-takeover",
        operation=Operation.EXECUTE, prohibit_rollback=False, create_time=created, start_time=created,
        status=status, subtasks=[],
    )  # fmt: skip


# --- tasks -----------------------------------------------------------------------------------------


async def _task_row(call: Call, task_id: int) -> dict[str, Any]:
    row: dict[str, Any] | None = await call.services.metadb(tasks.get_task, call.services.db, task_id)
    if row is None or row["status"] == "REJECTED":
        raise ApiError(404, f"task {task_id} does not exist")
    return row


async def _view(call: Call, row: dict[str, Any]) -> TaskView:
    client = await call.services.temporal()
    return await _task_view(
        client, row["workflow_id"], row["run_id"], int(row["task_id"]), row["cluster_id"], row.get("creator"),
        row.get("name"),
    )  # fmt: skip


# The registry's end states as OCP's task statuses.
REGISTRY_STATUS = {
    "SUCCESSFUL": TaskStatus.SUCCESSFUL,
    "ROLLED_BACK": TaskStatus.SUCCESSFUL,
    "ABORTED": TaskStatus.FAILED,
}


async def _view_or_row(call: Call, row: dict[str, Any]) -> TaskView:
    """The task; when its workflow cannot tell (past Temporal's retention), what the registry knows."""
    try:
        return await _view(call, row)
    except ApiError:
        status = REGISTRY_STATUS.get(row["status"], TaskStatus.FAILED)
        return _task_alone(
            int(row["task_id"]), row["name"], row["cluster_id"], row.get("creator"), row["created_at"], status
        )


@router.get(f"{API}/tasks/instances/{{task_id}}", summary="a task (OCP's task JSON)")
async def get_task(task_id: Id, call: Call = viewer) -> Response:
    return call.ok(await _view(call, await _task_row(call, task_id)))


class TaskSummary(BaseModel):
    id: int
    name: str
    status: str
    cluster: dict[str, Any] | None = None
    creator: dict[str, Any] | None = None
    start_time: str | None = Field(None, alias="startTime")
    finish_time: str | None = Field(None, alias="finishTime")
    subtasks: list[dict[str, Any]] = Field(default_factory=list)


@router.get(f"{API}/tasks/instances", summary="tasks, newest first, filtered by name, status and cluster")
async def list_tasks(
    name: str | None = None,
    status: str | None = None,
    cluster_id: int | None = Query(None, alias="clusterId", ge=1, le=MAX_ID),
    page: int = 1,
    size: int = 10,
    call: Call = viewer,
) -> Response:
    number, size = _paging(page, size)
    rows = await call.services.metadb(tasks.list_tasks, call.services.db, name=name, cluster_id=cluster_id)
    rows = [row for row in rows if row["status"] != "REJECTED"]
    total = len(rows)
    if status is None:  # only a status filter needs every task's view; else only this page's
        rows = rows[(number - 1) * size : number * size]
    views = await asyncio.gather(*(_view_or_row(call, row) for row in rows))
    managed = {row["id"]: row for row in await call.services.metadb(clusters.list_clusters, call.services.db)}
    found = [
        TaskSummary(
            id=view.id,
            name=view.name,
            status=view.status.value,
            cluster=_cluster_ref(view.cluster_id, managed),
            creator={"name": view.creator},
            startTime=view.start_time,
            finishTime=view.finish_time,
            subtasks=[
                {"id": s.id, "name": s.name, "description": s.description, "status": s.status, "operation": s.operation}
                for s in view.subtasks
            ],
        )
        for view in views
        if status is None or view.status.value == status
    ]
    if status is None:
        return call.ok(page_of(found, number, size, total))
    return call.ok(paged(found, number, size))


def _cluster_ref(cluster_id: int | None, managed: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """`{id, name, obClusterId}` of a task's cluster; the id alone while the cluster has no record."""
    if cluster_id is None:
        return None
    row = managed.get(cluster_id)
    return {"id": cluster_id, "name": row["name"], "obClusterId": row["ob_cluster_id"]} if row else {"id": cluster_id}


def _paging(number: int, size: int) -> tuple[int, int]:
    if number < 1 or not 1 <= size <= 1000:
        raise ApiError(
            400,
            "page starts at 1 and size is 1 to 1000",
            sub_errors=[SubError(field="page" if number < 1 else "size", message="out of range")],
        )
    return number, size


async def _update(call: Call, task_id: int, update: str, subtask_id: int | None = None) -> TaskView:
    row = await _task_row(call, task_id)
    client = await call.services.temporal()
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(row["workflow_id"], run_id=row["run_id"] or None)
    args = [SubtaskRef(subtask_id=subtask_id)] if subtask_id is not None else []
    try:
        view: TaskView = await handle.execute_update(update, args=args, result_type=TaskView)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise ApiError(400, f"refused: {reason}") from None
    except RPCError as exc:
        raise ApiError(400, f"refused: task {task_id} is not running ({exc.message})") from None
    log.info("trace %s: %s ran %s on task %s", call.trace_id, call.user.name, update, task_id)
    return view


@router.post(f"{API}/tasks/instances/{{task_id}}/retry", summary="run every FAILED subtask again")
async def retry_task(task_id: Id, call: Call = manager) -> Response:
    return call.ok(await _update(call, task_id, RETRY_UPDATE))


@router.post(f"{API}/tasks/instances/{{task_id}}/rollback", summary="undo the task's work in reverse order")
async def rollback_task(task_id: Id, call: Call = manager) -> Response:
    return call.ok(await _update(call, task_id, ROLLBACK_UPDATE))


@router.post(f"{API}/tasks/instances/{{task_id}}/subtasks/{{subtask_id}}/retry", summary="run a FAILED subtask again")
async def retry_subtask(task_id: Id, subtask_id: Id, call: Call = manager) -> Response:
    view = await _update(call, task_id, RETRY_SUBTASK_UPDATE, subtask_id)
    return call.ok(next((s for s in view.subtasks if s.id == subtask_id), None))


@router.post(f"{API}/tasks/instances/{{task_id}}/subtasks/{{subtask_id}}/skip", summary="skip a FAILED subtask")
async def skip_subtask(task_id: Id, subtask_id: Id, call: Call = manager) -> Response:
    await _update(call, task_id, SKIP_SUBTASK_UPDATE, subtask_id)
    return call.ok()


@router.post(f"{API}/tasks/instances/{{task_id}}/subtasks/{{subtask_id}}/cancel", summary="stop a RUNNING subtask")
async def cancel_subtask(task_id: Id, subtask_id: Id, call: Call = manager) -> Response:
    await _update(call, task_id, CANCEL_SUBTASK_UPDATE, subtask_id)
    return call.ok()


@router.get(f"{API}/tasks/instances/{{task_id}}/subtasks/{{subtask_id}}/log", summary="a subtask's log")
async def subtask_log(task_id: Id, subtask_id: Id, call: Call = viewer) -> Response:
    row = await _task_row(call, task_id)
    client = await call.services.temporal()
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(row["workflow_id"], run_id=row["run_id"] or None)
    try:
        text: str = await handle.query(SUBTASK_LOG_QUERY, SubtaskRef(subtask_id=subtask_id), result_type=str)
    except Exception:
        raise ApiError(404, f"task {task_id} has no subtask {subtask_id}") from None
    return call.ok({"log": text})


@router.get("/task/{task_id}", summary="the task's page in the Temporal UI (a redirect)")
async def task_page(task_id: Id, call: Call = viewer) -> RedirectResponse:
    row = await _task_row(call, task_id)
    return RedirectResponse(ui_link(call.services.settings, row["workflow_id"], row["run_id"]), status_code=302)


# --- clusters --------------------------------------------------------------------------------------


def _cluster(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "obClusterId": row["ob_cluster_id"],
        "address": row["address"],
        "port": row["port"],
        "connectionMode": row["connection_mode"],
        "version": row["version"],
        "status": row["status"],
    }


@router.get(f"{API}/ob/clusters", summary="managed clusters")
async def list_clusters(page: int = 1, size: int = 10, call: Call = viewer) -> Response:
    number, size = _paging(page, size)
    rows = await call.services.metadb(clusters.list_clusters, call.services.db)
    return call.ok(paged([_cluster(row) for row in rows], number, size))


@router.get(f"{API}/ob/clusters/{{cluster_id}}", summary="a managed cluster")
async def get_cluster(cluster_id: Id, call: Call = viewer) -> Response:
    row = await call.services.metadb(clusters.get_cluster, call.services.db, cluster_id)
    if row is None:
        raise ApiError(404, f"cluster {cluster_id} does not exist")
    return call.ok(_cluster(row))


class MoveOutBody(BaseModel):
    """OCP's moveOut body. `targetConfigAddress` is the obconfig_url to leave (default: the one from before
    the takeover). The other fields are OCP's; the values that would keep what a release removes are
    refused rather than ignored."""

    model_config = {"extra": "forbid"}

    targetConfigAddress: str | None = Field(default=None, max_length=2048)
    deleteHost: bool = True
    deleteHostIds: list[int] = Field(default_factory=list)
    skipOperationHostIds: list[int] = Field(default_factory=list)
    force: bool = False
    retainClusterInfo: bool = False


@router.post(f"{API}/ob/clusters/{{cluster_id}}/moveOut", summary="move a cluster out of management")
async def move_out(cluster_id: Id, request: Request, call: Call = manager) -> Response:
    """Start releasing a managed cluster (`ReleaseCluster`): its takeover's work undone, data untouched, the
    proxyro password left as it is. Answers the release task."""
    raw = await json_object(request) if (await request.body()).strip() else {}
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
    if body.targetConfigAddress:
        # The cluster's servers will fetch their root service list from it: pointing them elsewhere is an
        # administrator's call, as using a stored root password for another purpose is.
        require(call.user, ADMIN)
    try:
        start = ReleaseRequest(cluster_id=cluster_id, config_url=body.targetConfigAddress)
    except ValidationError as exc:
        raise invalid([{**e, "loc": ("targetConfigAddress",)} for e in exc.errors(include_input=False)]) from None
    services = call.services
    row = await services.metadb(clusters.get_cluster, services.db, cluster_id)
    if row is None:
        raise ApiError(404, f"cluster {cluster_id} does not exist")
    if row["status"] not in (clusters.RUNNING, clusters.RELEASING):
        raise ApiError(409, f"cluster {cluster_id} is {row['status']}: only a managed cluster moves out")
    workflow_id = release_workflow_id_for(row["address"], int(row["port"]))
    try:  # what the release would find first (its root@sys password above all), before anything starts
        await services.metadb(describe_managed_cluster, services.db, start, workflow_id)
    except FailedPrecondition as exc:
        raise ApiError(409, str(exc)) from None
    client = await services.temporal()
    task_id = await services.metadb(ids.allocate_task_id, services.db)
    record = functools.partial(
        tasks.record_task, services.db, task_id=task_id, workflow_id=workflow_id, name=RELEASE_TASK_NAME,
        cluster_id=cluster_id, creator=call.user.name, trace_id=call.trace_id,
    )  # fmt: skip
    await services.metadb(record, run_id="", status="RUNNING")
    try:
        handle = await client.start_workflow(
            ReleaseCluster.run,
            start.model_dump(mode="json", exclude_none=True),
            id=workflow_id,
            task_queue=services.settings.task_queue,
            memo={MEMO_CREATOR: call.user.name, MEMO_TRACE_ID: call.trace_id, MEMO_TASK_ID: task_id},
        )
    except WorkflowAlreadyStartedError:
        await services.metadb(record, run_id="", status="REJECTED")
        raise ApiError(409, f"cluster {cluster_id} is being moved out by another task ({workflow_id})") from None
    await services.metadb(record, run_id=handle.result_run_id or "", status="RUNNING")
    log.info("trace %s: %s started task %s (%s) for cluster %s", call.trace_id, call.user.name, task_id,
             workflow_id, cluster_id)  # fmt: skip
    deadline = time.monotonic() + TASK_WAIT_SECONDS
    while True:
        view = await _task_view(client, workflow_id, handle.result_run_id, task_id, cluster_id, call.user.name,
                                RELEASE_TASK_NAME)  # fmt: skip
        if view.subtasks or view.status is not TaskStatus.RUNNING or time.monotonic() > deadline:
            return call.ok(view)
        await asyncio.sleep(0.1)


# --- host types and credentials ------------------------------------------------------------------


def _host_type(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "description": row["description"], "createTime": row["created_at"]}


@router.get(f"{API}/compute/hostTypes", summary="host types")
async def list_host_types(page: int = 1, size: int = 10, call: Call = manager) -> Response:
    number, size = _paging(page, size)
    rows = await call.services.metadb(hosts.list_host_types, call.services.db)
    return call.ok(paged([_host_type(row) for row in rows], number, size))


class HostTypeBody(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    description: str = Field("", max_length=1024)


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid(exc.errors(include_input=False, include_url=False, include_context=False)) from None


@router.post(
    f"{API}/compute/hostTypes",
    openapi_extra=body_schema(HostTypeBody),
    summary="add a host type",
)
async def add_host_type(request: Request, call: Call = admin) -> Response:
    body: HostTypeBody = _parse(HostTypeBody, await json_object(request))
    db = call.services.db
    if any(row["name"] == body.name for row in await call.services.metadb(hosts.list_host_types, db)):
        raise ApiError(400, f"host type {body.name} exists", sub_errors=[SubError(field="name", message="exists")])
    host_type_id = await call.services.metadb(hosts.add_host_type, db, body.name, body.description)
    row = next(r for r in await call.services.metadb(hosts.list_host_types, db) if r["id"] == host_type_id)
    return call.ok(_host_type(row))


class SshCredential(BaseModel):
    type: str = Field(pattern="^(PASSWORD|PRIVATE_KEY)$")
    username: str = Field(min_length=1, max_length=255)
    passphrase: str | None = Field(None, repr=False)
    private_key: str | None = Field(None, alias="privateKey", repr=False)


class CredentialBody(BaseModel):
    target_type: str = Field(alias="targetType", pattern="^HOST$")
    name: str = Field(min_length=1, max_length=255)
    description: str | None = None
    ssh_credential_property: SshCredential = Field(alias="sshCredentialProperty")


def _credential(row: dict[str, Any]) -> dict[str, Any]:
    kind = {credentials.HOST: "HOST", credentials.CLUSTER: "OB"}.get(row["kind"], row["kind"])
    return {
        "id": row["id"],
        "name": row["name"],
        "targetType": kind,
        "username": row["username"],
        "type": "PRIVATE_KEY" if row["secret_type"] == "private_key" else "PASSWORD",
        "createTime": row["created_at"],
    }


@router.get(f"{API}/profiles/me/credentials", summary="credentials, never their secrets")
async def list_credentials(page: int = 1, size: int = 10, call: Call = admin) -> Response:
    number, size = _paging(page, size)
    rows = await call.services.metadb(credentials.list_credentials, call.services.db)
    shown = [_credential(row) for row in rows if row["kind"] in (credentials.HOST, credentials.CLUSTER)]
    return call.ok(paged(shown, number, size))


@router.post(
    f"{API}/profiles/me/credentials",
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": CredentialBody.model_json_schema(by_alias=True)}}}
    },
    summary="add an SSH credential (HOST)",
)
async def add_credential(request: Request, call: Call = admin) -> Response:
    body: CredentialBody = _parse(CredentialBody, await json_object(request))
    ssh = body.ssh_credential_property
    secret, passphrase, secret_type = ssh.passphrase, None, "password"
    if ssh.type == "PRIVATE_KEY":
        secret_type = "private_key"
        # Clients in the field send the key's text in `passphrase` and no key field.
        secret, passphrase = (ssh.private_key, ssh.passphrase) if ssh.private_key else (ssh.passphrase, None)
    if not secret:
        field = "sshCredentialProperty.privateKey" if ssh.type == "PRIVATE_KEY" else "sshCredentialProperty.passphrase"
        raise ApiError(400, f"{field} is required", sub_errors=[SubError(field=field, message="is required")])
    db = call.services.db
    if await call.services.metadb(credentials.describe_credential, db, kind=credentials.HOST, name=body.name):
        raise ApiError(400, f"credential {body.name} exists", sub_errors=[SubError(field="name", message="exists")])
    credential_id = await call.services.metadb(
        credentials.save_credential, db, call.services.vault, kind=credentials.HOST, name=body.name,
        username=ssh.username, secret=secret, secret_type=secret_type, passphrase=passphrase,
    )  # fmt: skip
    log.info("trace %s: %s added host credential %s", call.trace_id, call.user.name, credential_id)
    row = await call.services.metadb(credentials.describe_credential, db, credential_id=credential_id)
    return call.ok(_credential(row))
