"""The one way in: every takeover, release and precheck starts here, whoever asks for it (the REST API, the
Python client and with it the CLI; a fleet's members are prepared by the same `metadb.task_starts`).

A start checks that nothing else works on the cluster, prepares the task in the metadb (ids, task row, the
request's passwords into the password box), starts its workflow and, when the workflow cannot start, undoes
the preparation: no task row left RUNNING, no password left in the box.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.engine import (
    fleet_workflow_id,
    release_workflow_id_for,
    task_memo,
    verify_workflow_id,
    workflow_id_for,
)
from contracts.errors import ClusterNotFound, FailedPrecondition, TaskConflict
from contracts.fleet import FleetRequest, check_fleet_name
from contracts.messages import PrecheckReport, PreparedTask
from contracts.release import ReleaseRequest
from contracts.request import TakeOverRequest
from contracts.task_view import RecordedStatus, TaskView
from contracts.verification import VerificationResult, VerifyRequest
from metadb import clusters, task_starts, tasks
from metadb.db import Database
from metadb.managed import describe_managed_cluster
from metadb.vault import Vault
from workflows.fleet import TakeOverFleet
from workflows.precheck import TakeOverPrecheck
from workflows.release import ReleaseCluster
from workflows.takeover import TakeOverCluster
from workflows.verify import VerifyManagedCluster

Result = TypeVar("Result")
log = logging.getLogger("ob_takeover.tasks")


@dataclass(frozen=True)
class TaskStarter:
    """What starting a task works with: the metadb and the password box, and Temporal."""

    db: Database
    vault: Vault
    client: Client
    task_queue: str

    async def metadb(self, work: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
        """A metadb call, off the event loop."""
        return await asyncio.to_thread(work, *args, **kwargs)


@dataclass(frozen=True)
class StartedTask:
    """A task whose workflow runs: its ids and its workflow."""

    task_id: int
    cluster_id: int | None
    handle: WorkflowHandle[Any, TaskView]

    @property
    def workflow_id(self) -> str:
        return self.handle.id


async def start_takeover(
    starter: TaskStarter, request: TakeOverRequest, *, creator: str, trace_id: str | None = None
) -> StartedTask:
    """Start taking the cluster at the request's endpoint over; TaskConflict when a task works on it already
    or it is managed here."""
    workflow_id = workflow_id_for(request.address, request.port)
    await _refuse_if_taken(starter, request, workflow_id)
    prepared = await starter.metadb(
        task_starts.prepare_takeover, starter.db, starter.vault, request,
        workflow_id=workflow_id, creator=creator, trace_id=trace_id,
    )  # fmt: skip
    conflict = f"cluster {request.endpoint} is being taken over by another task ({workflow_id})"
    return await _start(starter, TakeOverCluster.run, prepared, creator, trace_id, conflict)


async def start_release(
    starter: TaskStarter, release: ReleaseRequest, *, creator: str, trace_id: str | None = None
) -> StartedTask:
    """Start moving managed cluster `release.cluster_id` out of management; ClusterNotFound, or
    FailedPrecondition naming what the release would find wrong first (its root@sys password above all)."""
    row = await starter.metadb(clusters.get_cluster, starter.db, release.cluster_id)
    if row is None:
        raise ClusterNotFound(f"cluster {release.cluster_id} does not exist")
    if row["status"] not in (clusters.RUNNING, clusters.RELEASING):
        raise FailedPrecondition(f"cluster {release.cluster_id} is {row['status']}: only a managed cluster moves out")
    workflow_id = release_workflow_id_for(row["address"], int(row["port"]))
    await starter.metadb(describe_managed_cluster, starter.db, release, workflow_id)
    prepared = await starter.metadb(
        task_starts.prepare_release, starter.db, workflow_id=workflow_id, cluster_id=release.cluster_id,
        body=release.model_dump(mode="json", exclude_none=True), creator=creator, trace_id=trace_id,
    )  # fmt: skip
    conflict = f"cluster {release.cluster_id} is being moved out by another task ({workflow_id})"
    return await _start(starter, ReleaseCluster.run, prepared, creator, trace_id, conflict)


async def start_verification(
    starter: TaskStarter, request: VerifyRequest, *, creator: str, trace_id: str | None = None
) -> WorkflowHandle[Any, VerificationResult]:
    """Start verifying managed cluster `request.cluster_id` (with `repair`, and repairing it); ClusterNotFound,
    or FailedPrecondition when it is not RUNNING under management. One repair of a cluster at a time: a repair
    runs as `verify-<id>-repair` (TaskConflict while one runs); verifications alone run side by side."""
    row = await starter.metadb(clusters.get_cluster, starter.db, request.cluster_id)
    if row is None:
        raise ClusterNotFound(f"cluster {request.cluster_id} does not exist")
    if row["status"] != clusters.RUNNING:
        raise FailedPrecondition(f"cluster {request.cluster_id} is {row['status']}: only a managed cluster is verified")
    suffix = "repair" if request.repair else (trace_id or os.urandom(4).hex())[:8]
    workflow_id = verify_workflow_id(request.cluster_id, suffix)
    try:
        return await starter.client.start_workflow(
            VerifyManagedCluster.run,
            request.model_dump(mode="json"),
            id=workflow_id,
            task_queue=starter.task_queue,
            memo=task_memo(creator, trace_id),
            static_summary=f"Verify cluster {row['name']}{' and repair it' if request.repair else ''}",
        )
    except WorkflowAlreadyStartedError:
        raise TaskConflict(f"cluster {request.cluster_id} is being repaired already ({workflow_id})") from None


async def run_precheck(
    starter: TaskStarter, request: TakeOverRequest, *, creator: str, trace_id: str | None = None
) -> PrecheckReport:
    """The precheck of `request`, to its end; its passwords are in the password box for its time only."""
    suffix = (trace_id or os.urandom(4).hex())[:8]
    workflow_id = f"precheck-{request.address}-{request.port}-{suffix}"
    prepared = await starter.metadb(
        task_starts.prepare_precheck, starter.db, starter.vault, request, workflow_id=workflow_id
    )
    try:
        report: PrecheckReport = await starter.client.execute_workflow(
            TakeOverPrecheck.run,
            prepared.input,
            id=workflow_id,
            task_queue=starter.task_queue,
            memo=task_memo(creator, trace_id),
        )
        return report
    finally:
        await starter.metadb(task_starts.discard, starter.db, prepared)


async def start_fleet(
    client: Client, task_queue: str, request: FleetRequest, name: str, *, creator: str
) -> WorkflowHandle[TakeOverFleet, Any]:
    """Start a fleet takeover named `name` (workflow id `fleet-NAME`). The fleet itself needs nothing from the
    metadb; each member is prepared as a takeover is (`metadb.task_starts`), by the fleet as it starts it."""
    return await client.start_workflow(
        TakeOverFleet.run,
        request.model_dump(mode="json", exclude_none=True),
        id=fleet_workflow_id(check_fleet_name(name)),
        task_queue=task_queue,
        memo=task_memo(creator),
        static_summary=f"Take over {len(request.requests)} clusters, {request.max_concurrent} at a time",
    )


# How a workflow that ended without ending its task leaves the task in the registry.
_ENDED_AS = {
    WorkflowExecutionStatus.CANCELED: RecordedStatus.ABORTED,
    WorkflowExecutionStatus.TERMINATED: RecordedStatus.ABORTED,
}


async def sweep_ended_tasks(starter: TaskStarter) -> int:
    """Close the tasks whose workflow ended without ending them (it failed before its first subtask: the
    cluster did not answer, a wrong password; or it was terminated): the passwords their start put in the
    password box leave it, and their row is FAILED (ABORTED when cancelled or terminated). A workflow that ends
    normally does this itself in its last subtask. Returns how many tasks were closed."""
    closed = 0
    for row in await starter.metadb(tasks.list_tasks, starter.db, statuses=[RecordedStatus.RUNNING]):
        if not row["run_id"]:
            continue  # still starting
        try:
            # The workflow's latest run: a reset or a continued run carries the task on under another run id.
            latest = await starter.client.get_workflow_handle(row["workflow_id"]).describe()
        except RPCError as exc:
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                # Past retention, or another namespace than the one that ran it: not proof that it ended.
                log.warning("task %s: workflow %s not found; left as it is", row["task_id"], row["workflow_id"])
                continue
            raise
        if latest.run_id != row["run_id"] or latest.status in (
            None,
            WorkflowExecutionStatus.RUNNING,
            WorkflowExecutionStatus.COMPLETED,
        ):
            continue
        ended_as = _ENDED_AS.get(latest.status, RecordedStatus.FAILED)
        if await starter.metadb(task_starts.close_ended, starter.db, int(row["task_id"]), row["run_id"], ended_as):
            closed += 1
    return closed


async def _start(
    starter: TaskStarter,
    run: Callable[..., Awaitable[TaskView]],
    prepared: PreparedTask,
    creator: str,
    trace_id: str | None,
    conflict: str,
) -> StartedTask:
    """Start a prepared task's workflow; undo the preparation when it does not start."""
    assert prepared.task_id is not None
    try:
        handle: WorkflowHandle[Any, TaskView] = await starter.client.start_workflow(
            run,
            prepared.input,
            id=prepared.workflow_id,
            task_queue=starter.task_queue,
            memo=task_memo(creator, trace_id, prepared.task_id, prepared.cluster_id),
        )
    except BaseException as exc:
        await starter.metadb(task_starts.discard, starter.db, prepared)
        if isinstance(exc, WorkflowAlreadyStartedError):
            raise TaskConflict(conflict) from None
        raise
    await starter.metadb(task_starts.record_started, starter.db, prepared, handle.result_run_id or "")
    return StartedTask(prepared.task_id, prepared.cluster_id, handle)


async def _refuse_if_taken(starter: TaskStarter, request: TakeOverRequest, workflow_id: str) -> None:
    """TaskConflict when a takeover of the endpoint runs, or the cluster at the endpoint is managed already."""
    try:
        description = await starter.client.get_workflow_handle(workflow_id).describe()
        if description.status == WorkflowExecutionStatus.RUNNING:
            row = await starter.metadb(tasks.latest_task_of, starter.db, workflow_id)
            holder = f"task {row['task_id']}" if row else "a task"
            raise TaskConflict(f"cluster {request.endpoint} is being taken over by {holder} ({workflow_id})")
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    for row in await starter.metadb(clusters.list_clusters, starter.db):
        if (row["address"], int(row["port"])) == (request.address, request.port) and row["status"] == clusters.RUNNING:
            raise TaskConflict(
                f"cluster {row['name']} at {request.endpoint} is already managed here as cluster {row['id']}"
            )
