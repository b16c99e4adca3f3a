"""Tasks: a task as OCP's task JSON (from its workflow, else from the task registry), the list of tasks,
a subtask's log, the task's page in the Temporal UI, and the operator's retry, rollback, skip and cancel
(workflow updates)."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from contracts.engine import (
    CANCEL_SUBTASK_UPDATE,
    RETRY_SUBTASK_UPDATE,
    RETRY_UPDATE,
    ROLLBACK_UPDATE,
    SKIP_SUBTASK_UPDATE,
    SUBTASK_LOG_QUERY,
    TASK_QUERY,
)
from contracts.messages import SubtaskRef
from contracts.task_view import Operation, RecordedStatus, SubtaskView, TaskStatus, TaskView, ocp_status, task_name
from metadb import clusters, tasks
from ob_takeover.api.deps import (
    API,
    MAX_ID,
    Call,
    ClosedViews,
    Id,
    ManagerCall,
    PageNumber,
    PageOf,
    PageSize,
    ViewerCall,
    answers,
)
from ob_takeover.api.envelope import ApiError, now_iso, page_of
from ob_takeover.connection import ui_link

log = logging.getLogger("ob_takeover.api")

router = APIRouter()


def _of_task(view: TaskView, task_id: int, workflow_id: str) -> TaskView:
    """`view` if it is task `task_id`'s: a task recorded without its run could meet a later takeover's."""
    if view.id != task_id:
        raise ApiError(404, f"task {task_id}: its run of {workflow_id} is no longer known; task {view.id} ran since")
    return view


async def task_view(
    client: Client,
    workflow_id: str,
    run_id: str | None,
    task_id: int,
    cluster_id: int | None,
    creator: str | None,
    name: str | None = None,
    closed: ClosedViews | None = None,
) -> TaskView:
    """The task as its workflow shows it; before its subtasks exist (the topology is being read), or when
    its workflow ended before they did (a wrong password), the task alone, RUNNING or FAILED. With `closed`,
    the view of a run that has ended is kept there and read from there next time (it cannot change)."""
    gone = ApiError(404, f"task {task_id}: its workflow {workflow_id} no longer exists")
    if closed is not None and run_id and (workflow_id, run_id) in closed:
        known = closed.get(workflow_id, run_id)
        if known is None:
            raise gone
        return _of_task(known, task_id, workflow_id)
    handle: WorkflowHandle[Any, TaskView] = client.get_workflow_handle(
        workflow_id, run_id=run_id or None, result_type=TaskView
    )
    try:
        description = await handle.describe()
    except RPCError as exc:
        # Not found (past Temporal's retention), or a run id Temporal cannot read: the registry answers.
        if exc.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise
        if closed is not None and run_id:
            closed.keep(workflow_id, run_id, None)
        raise gone from None
    # A view that the workflow itself gave (its result, or its answer to the query) is final once it ended.
    final = True
    if description.status == WorkflowExecutionStatus.COMPLETED:
        view: TaskView = await handle.result()
    else:
        try:
            view = await handle.query(TASK_QUERY, result_type=TaskView)
        except Exception as exc:  # "task not ready" while the topology is read, or it failed before its task
            # The workflow's own refusal is final; no answer at all (no worker, a timeout) is not.
            final = isinstance(exc, WorkflowQueryFailedError)
            running = description.status == WorkflowExecutionStatus.RUNNING
            status = TaskStatus.RUNNING if running else TaskStatus.FAILED
            view = _task_alone(task_id, name or task_name(False), cluster_id, creator, now_iso(), status)
    ended = description.status not in (None, WorkflowExecutionStatus.RUNNING)
    if closed is not None and run_id and ended and final:
        closed.keep(workflow_id, run_id, view)
    return _of_task(view, task_id, workflow_id)


def _task_alone(
    task_id: int, name: str, cluster_id: int | None, creator: str | None, created: str, status: TaskStatus
) -> TaskView:
    """A task without its subtasks, for when its workflow cannot show them."""
    return TaskView(
        id=task_id, name=name, cluster_id=cluster_id, creator=creator or "temporal", executor="ob-takeover",
        operation=Operation.EXECUTE, prohibit_rollback=False, create_time=created, start_time=created,
        status=status, subtasks=[],
    )  # fmt: skip


async def _task_row(call: Call, task_id: int) -> dict[str, Any]:
    row: dict[str, Any] | None = await call.services.metadb(tasks.get_task, call.services.db, task_id)
    if row is None or row["status"] == RecordedStatus.REJECTED:
        raise ApiError(404, f"task {task_id} does not exist")
    return row


async def _view(call: Call, row: dict[str, Any]) -> TaskView:
    client = await call.services.temporal()
    return await task_view(
        client, row["workflow_id"], row["run_id"], int(row["task_id"]), row["cluster_id"], row.get("creator"),
        row.get("name"), call.services.closed_views,
    )  # fmt: skip


async def _view_or_row(call: Call, row: dict[str, Any]) -> TaskView:
    """The task; when its workflow cannot tell (past Temporal's retention), what the registry knows."""
    try:
        return await _view(call, row)
    except ApiError:
        status = ocp_status(row["status"])
        return _task_alone(
            int(row["task_id"]), row["name"], row["cluster_id"], row.get("creator"), row["created_at"], status
        )


@router.get(f"{API}/tasks/instances/{{task_id}}", summary="a task (OCP's task JSON)", responses=answers(TaskView))
async def get_task(task_id: Id, call: ViewerCall) -> Response:
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


@router.get(
    f"{API}/tasks/instances", summary="tasks, newest first, filtered by name, status and cluster",
    responses=answers(PageOf[TaskSummary]),
)  # fmt: skip
async def list_tasks(
    call: ViewerCall,
    name: str | None = None,
    status: str | None = None,
    cluster_id: int | None = Query(None, alias="clusterId", ge=1, le=MAX_ID),
    page: PageNumber = 1,
    size: PageSize = 10,
) -> Response:
    """Paged in the metadb: only the page's tasks are read from Temporal (and those that have ended, once). A
    status filter is answered from the registry where it knows the status (SUCCESSFUL: ended so), and from the
    workflows of the tasks still running otherwise (RUNNING and FAILED are told apart by their workflows)."""
    number = page
    services = call.services
    await services.sweep_if_due()
    query = functools.partial(tasks.list_tasks, services.db, name=name, cluster_id=cluster_id)
    if status is None or status == TaskStatus.SUCCESSFUL:
        recorded = None if status is None else [RecordedStatus.SUCCESSFUL, RecordedStatus.ROLLED_BACK]
        rows = await services.metadb(query, statuses=recorded, offset=(number - 1) * size, limit=size)
        total = await services.metadb(
            tasks.count_tasks, services.db, name=name, cluster_id=cluster_id, statuses=recorded
        )
        views = await _views_of(call, rows)
    elif status in (TaskStatus.RUNNING, TaskStatus.FAILED):
        live = await services.metadb(query, statuses=[RecordedStatus.RUNNING])
        found = [v for v in await _views_of(call, live) if v.status == status]
        ended: list[dict[str, Any]] = []
        if status == TaskStatus.FAILED:  # and those the registry knows ended so
            ended = await services.metadb(query, statuses=[RecordedStatus.ABORTED, RecordedStatus.FAILED])
        ids = sorted([v.id for v in found] + [int(r["task_id"]) for r in ended], reverse=True)
        total, ids = len(ids), ids[(number - 1) * size : number * size]
        known = {v.id: v for v in found}
        rows_by_id = {int(r["task_id"]): r for r in ended}
        read = await _views_of(call, [rows_by_id[i] for i in ids if i not in known])
        known.update((v.id, v) for v in read)
        views = [known[i] for i in ids]
    else:  # not a status OCP's tasks take
        views, total = [], 0
    managed = {row["id"]: row for row in await services.metadb(clusters.list_clusters, services.db)}
    return call.ok(page_of([_summary(view, managed) for view in views], number, size, total))


# Tasks one list reads from their workflows at once, at most (a running one costs a describe and a query a
# worker answers): a list of 1,000, or filtered by a live status, cannot flood the workers running takeovers.
LIVE_READS = 16


async def _views_of(call: Call, rows: list[dict[str, Any]]) -> list[TaskView]:
    limit = asyncio.Semaphore(LIVE_READS)

    async def read(row: dict[str, Any]) -> TaskView:
        async with limit:
            return await _view_or_row(call, row)

    return list(await asyncio.gather(*(read(row) for row in rows)))


def _summary(view: TaskView, managed: dict[int, dict[str, Any]]) -> TaskSummary:
    return TaskSummary(
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


def _cluster_ref(cluster_id: int | None, managed: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """`{id, name, obClusterId}` of a task's cluster; the id alone while the cluster has no record."""
    if cluster_id is None:
        return None
    row = managed.get(cluster_id)
    return {"id": cluster_id, "name": row["name"], "obClusterId": row["ob_cluster_id"]} if row else {"id": cluster_id}


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


@router.post(
    f"{API}/tasks/instances/{{task_id}}/retry", summary="run every FAILED subtask again", responses=answers(TaskView)
)
async def retry_task(task_id: Id, call: ManagerCall) -> Response:
    return call.ok(await _update(call, task_id, RETRY_UPDATE))


@router.post(
    f"{API}/tasks/instances/{{task_id}}/rollback", summary="undo the task's work in reverse order",
    responses=answers(TaskView),
)  # fmt: skip
async def rollback_task(task_id: Id, call: ManagerCall) -> Response:
    return call.ok(await _update(call, task_id, ROLLBACK_UPDATE))


@router.post(
    f"{API}/tasks/instances/{{task_id}}/subtasks/{{subtask_id}}/retry", summary="run a FAILED subtask again",
    responses=answers(SubtaskView),
)  # fmt: skip
async def retry_subtask(task_id: Id, subtask_id: Id, call: ManagerCall) -> Response:
    view = await _update(call, task_id, RETRY_SUBTASK_UPDATE, subtask_id)
    return call.ok(next((s for s in view.subtasks if s.id == subtask_id), None))


@router.post(
    f"{API}/tasks/instances/{{task_id}}/subtasks/{{subtask_id}}/skip", summary="skip a FAILED subtask",
    responses=answers(None),
)  # fmt: skip
async def skip_subtask(task_id: Id, subtask_id: Id, call: ManagerCall) -> Response:
    await _update(call, task_id, SKIP_SUBTASK_UPDATE, subtask_id)
    return call.ok()


@router.post(
    f"{API}/tasks/instances/{{task_id}}/subtasks/{{subtask_id}}/cancel", summary="stop a RUNNING subtask",
    responses=answers(None),
)  # fmt: skip
async def cancel_subtask(task_id: Id, subtask_id: Id, call: ManagerCall) -> Response:
    await _update(call, task_id, CANCEL_SUBTASK_UPDATE, subtask_id)
    return call.ok()


class SubtaskLog(BaseModel):
    log: str


@router.get(
    f"{API}/tasks/instances/{{task_id}}/subtasks/{{subtask_id}}/log", summary="a subtask's log",
    responses=answers(SubtaskLog),
)  # fmt: skip
async def subtask_log(task_id: Id, subtask_id: Id, call: ViewerCall) -> Response:
    row = await _task_row(call, task_id)
    client = await call.services.temporal()
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(row["workflow_id"], run_id=row["run_id"] or None)
    try:
        text: str = await handle.query(SUBTASK_LOG_QUERY, SubtaskRef(subtask_id=subtask_id), result_type=str)
    except Exception:
        raise ApiError(404, f"task {task_id} has no subtask {subtask_id}") from None
    return call.ok({"log": text})


@router.get(
    "/task/{task_id}", summary="the task's page in the Temporal UI (a redirect)", response_class=RedirectResponse,
    status_code=302, responses={302: {"description": "to the task's page in the Temporal UI"}},
)  # fmt: skip
async def task_page(task_id: Id, call: ViewerCall) -> RedirectResponse:
    row = await _task_row(call, task_id)
    return RedirectResponse(ui_link(call.services.settings, row["workflow_id"], row["run_id"]), status_code=302)
