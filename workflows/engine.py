"""The engine every task workflow shares: OCP's task with its subtask graph, walked one activity per
subtask, with OCP's operator operations (retry, retry_subtask, skip_subtask, cancel_subtask, rollback)
as updates, the task JSON as a query, and abort on workflow cancellation.

A task workflow (`TakeOverCluster`, `ReleaseCluster`) subclasses `SubtaskWorkflow`: its run builds the
`Task` from its own subtask table, then calls `_run_task`; `_input_for` says what each activity gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
    TimeoutType,
    is_cancelled_exception,
)

from contracts import errors
from contracts.engine import (
    CANCEL_SUBTASK_UPDATE,
    CLUSTER_ADDRESS_ATTRIBUTE,
    CLUSTER_NAME_ATTRIBUTE,
    MEMBER_UPDATE_SIGNAL,
    RETRY_SUBTASK_UPDATE,
    RETRY_UPDATE,
    ROLLBACK_UPDATE,
    SKIP_SUBTASK_UPDATE,
    SUBTASK_LOG_QUERY,
    TASK_QUERY,
    TASK_STATUS_ATTRIBUTE,
)
from contracts.errors import OperationRefused
from contracts.fleet import MemberStatus, MemberUpdate
from contracts.messages import EngineSettings, SubtaskInput, SubtaskRef, SubtaskResult
from contracts.stages import SubtaskDef
from contracts.target import ClusterTarget, TakeoverOptions
from contracts.task_view import Operation, RecordedStatus, SubtaskStatus, TaskView
from workflows.task import Subtask, Task, format_time

CLUSTER_NAME_KEY = SearchAttributeKey.for_keyword(CLUSTER_NAME_ATTRIBUTE)
CLUSTER_ADDRESS_KEY = SearchAttributeKey.for_keyword(CLUSTER_ADDRESS_ATTRIBUTE)
TASK_STATUS_KEY = SearchAttributeKey.for_keyword(TASK_STATUS_ATTRIBUTE)
SEARCH_ATTRIBUTES = (CLUSTER_NAME_KEY, CLUSTER_ADDRESS_KEY, TASK_STATUS_KEY)
# Scaled timeouts never drop below this, so a test scale cannot starve a subtask of time to run.
MIN_SCALED_TIMEOUT_SECONDS = 3.0
MIN_SCALED_HEARTBEAT_SECONDS = 2.0
# Subtasks heartbeat within 8 s instead of 30 s, so a lost worker's subtask runs again within 10 s.
SHORT_HEARTBEAT_PATCH = "short-heartbeats"
# A task started by a fleet tells the fleet when its status changes.
FLEET_MEMBER_PATCH = "fleet-member-updates"


class SubtaskWorkflow:
    """The shared engine of task workflows (not a workflow itself: subclasses add `@workflow.run`)."""

    def __init__(self) -> None:
        self._task: Task | None = None
        # The cluster the subtasks work on, and what a takeover does beyond reaching it.
        self._target: ClusterTarget | None = None
        self._options = TakeoverOptions()
        self._settings = EngineSettings()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._changed = False
        self._published_status: str = RecordedStatus.CREATING
        self._updates_sent = 0
        self._updates: list[asyncio.Task[None]] = []

    async def _run_task(self) -> TaskView:
        """Walk the task's graph until it ends; on cancellation, abort it."""
        try:
            await self._drive()
        except asyncio.CancelledError:
            await self._abort()
            await self._updates_delivered()
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._updates_delivered()
        return self._require_task().view()

    def _input_for(self, task: Task, subtask: Subtask, operation: str) -> SubtaskInput:
        """What the activity of `subtask` gets."""
        assert self._target is not None
        plan = subtask.plan
        return SubtaskInput(
            task_id=task.id,
            subtask_id=subtask.id,
            subtask_name=subtask.name,
            workflow_id=workflow.info().workflow_id,
            operation=operation,
            target=self._target,
            options=self._options,
            topology=task.topology if plan.node_kind == "CLUSTER" else None,
            node_kind=plan.node_kind,
            server=plan.server,
            host=plan.host,
            zone=plan.zone,
            context=task.context_for(subtask),
            **self._input_extras(task),
        )

    def _input_extras(self, task: Task) -> dict[str, Any]:
        """More `SubtaskInput` fields a task workflow sets for every subtask."""
        return {}

    # --- queries and updates ----------------------------------------------------------------

    @workflow.query(name=TASK_QUERY)
    def task(self) -> TaskView:
        return self._require_task().view()

    @workflow.query(name=SUBTASK_LOG_QUERY)
    def subtask_log(self, ref: SubtaskRef) -> str:
        try:
            return self._require_task().subtask(ref.subtask_id).log
        except OperationRefused as exc:
            raise ApplicationError(str(exc), type=exc.type) from None

    @workflow.update(name=RETRY_UPDATE)
    async def retry(self) -> TaskView:
        self._count_operation(RETRY_UPDATE, "accepted")
        task = self._require_task()
        now = self._now()
        for subtask in task.apply_retry(now):
            workflow.logger.info("task %s: operator retries subtask %s", task.id, subtask.label)
        return self._after_operation()

    @retry.validator
    def _validate_retry(self) -> None:
        self._validate(RETRY_UPDATE, lambda task: task.check_retry())

    @workflow.update(name=RETRY_SUBTASK_UPDATE)
    async def retry_subtask(self, ref: SubtaskRef) -> TaskView:
        self._count_operation(RETRY_SUBTASK_UPDATE, "accepted")
        self._apply_to_subtask(ref, Task.apply_retry_subtask, "retries")
        return self._after_operation()

    @retry_subtask.validator
    def _validate_retry_subtask(self, ref: SubtaskRef) -> None:
        self._validate(RETRY_SUBTASK_UPDATE, lambda task: task.check_retry_subtask(ref.subtask_id))

    @workflow.update(name=SKIP_SUBTASK_UPDATE)
    async def skip_subtask(self, ref: SubtaskRef) -> TaskView:
        self._count_operation(SKIP_SUBTASK_UPDATE, "accepted")
        self._apply_to_subtask(ref, Task.apply_skip_subtask, "skips")
        return self._after_operation()

    @skip_subtask.validator
    def _validate_skip_subtask(self, ref: SubtaskRef) -> None:
        self._validate(SKIP_SUBTASK_UPDATE, lambda task: task.check_skip_subtask(ref.subtask_id))

    @workflow.update(name=CANCEL_SUBTASK_UPDATE)
    async def cancel_subtask(self, ref: SubtaskRef) -> TaskView:
        self._count_operation(CANCEL_SUBTASK_UPDATE, "accepted")
        subtask = self._apply_to_subtask(ref, Task.apply_cancel_subtask, "cancels")
        self._running[subtask.id].cancel()
        self._publish()
        # Answer once the activity has stopped and the subtask is FAILED.
        await workflow.wait_condition(lambda: subtask.status is not SubtaskStatus.CANCELING)
        return self._require_task().view()

    @cancel_subtask.validator
    def _validate_cancel_subtask(self, ref: SubtaskRef) -> None:
        self._validate(CANCEL_SUBTASK_UPDATE, lambda task: task.check_cancel_subtask(ref.subtask_id))

    @workflow.update(name=ROLLBACK_UPDATE)
    async def rollback(self) -> TaskView:
        self._count_operation(ROLLBACK_UPDATE, "accepted")
        task = self._require_task()
        task.apply_rollback(self._now())
        workflow.logger.info("task %s: operator rolls the task back", task.id)
        return self._after_operation()

    @rollback.validator
    def _validate_rollback(self) -> None:
        self._validate(ROLLBACK_UPDATE, lambda task: task.check_rollback())

    def _apply_to_subtask(self, ref: SubtaskRef, apply: Callable[[Task, Subtask, str], None], verb: str) -> Subtask:
        """An operator operation on one subtask (its validator has checked that OCP's rules allow it)."""
        task = self._require_task()
        subtask = task.subtask(ref.subtask_id)
        apply(task, subtask, self._now())
        workflow.logger.info("task %s: operator %s subtask %s", task.id, verb, subtask.label)
        return subtask

    def _validate(self, operation: str, check: Any) -> None:
        """Run an OCP rule check; a refusal is logged, since a rejected update leaves no history."""
        try:
            check(self._require_task())
        except OperationRefused as exc:
            workflow.logger.warning("operator request %s refused: %s", operation, exc)
            self._count_operation(operation, "refused")
            # A refusal stands until the task changes: asking again at once is refused again.
            raise ApplicationError(str(exc), type=exc.type, non_retryable=True) from None
        except ApplicationError as exc:
            workflow.logger.warning("operator request %s refused: %s", operation, exc)
            raise

    def _count_operation(self, kind: str, outcome: str) -> None:
        """`ob_takeover_operations_total{kind, outcome}`: operator operations (not counted again on replay)."""
        counter = workflow.metric_meter().create_counter(
            "ob_takeover_operations_total", "Operator operations on takeover tasks, by kind and outcome"
        )
        counter.add(1, {"kind": kind, "outcome": outcome})

    def _after_operation(self) -> TaskView:
        self._changed = True
        self._publish()
        return self._require_task().view()

    def _require_task(self) -> Task:
        if self._task is None:
            raise ApplicationError(
                "the task is being created: the cluster's topology is not known yet",
                type=errors.TASK_NOT_READY,
            )
        return self._task

    # --- driving the graph --------------------------------------------------------------------

    async def _drive(self) -> None:
        task = self._require_task()
        self._publish()
        while True:
            now = self._now()
            for subtask in task.next_to_start():
                self._start(task, subtask, now)
            self._publish()
            if task.finished:
                return
            await workflow.wait_condition(lambda: self._changed)
            self._changed = False

    def _start(self, task: Task, subtask: Subtask, now: str) -> None:
        task.start(subtask, now)
        activity = self._activity_for(task, subtask)
        if activity is None:
            # Wait nodes, and rollback of subtasks that have nothing to undo, finish at once.
            task.succeed(subtask, now, [], {})
            self._changed = True
            return
        self._running[subtask.id] = asyncio.create_task(self._run(task, subtask, activity))

    def _activity_for(self, task: Task, subtask: Subtask) -> str | None:
        stage = subtask.plan.stage
        if stage is None:
            return None
        return stage.compensation if task.rolling_back else stage.activity

    async def _run(self, task: Task, subtask: Subtask, activity: str) -> None:
        stage = subtask.plan.stage
        assert stage is not None and self._target is not None
        plan = subtask.plan
        arg = self._input_for(task, subtask, subtask.operation.value)
        verb = "Roll back" if task.rolling_back else None
        summary = f"{verb + ' · ' if verb else ''}{subtask.name} · {plan.node or task.topology.cluster_name}"
        try:
            result: SubtaskResult = await workflow.execute_activity(
                activity,
                arg,
                result_type=SubtaskResult,
                schedule_to_close_timeout=self._scaled(stage.timeout),
                heartbeat_timeout=self._heartbeat_timeout(stage),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=self._settings.retry_initial_interval),
                    maximum_interval=timedelta(seconds=30),
                    maximum_attempts=stage.max_attempts,
                ),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                activity_id=f"{subtask.id}-{subtask.run_time}-{subtask.operation.value.lower()}",
                summary=summary,
            )
        except asyncio.CancelledError:
            self._finish_cancelled(task, subtask)
            if task.aborted:
                raise
            return
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                self._finish_cancelled(task, subtask)
            else:
                message = failure_message(exc, self._scaled(stage.timeout))
                task.fail(subtask, self._now(), _failure_log(exc), message)
                workflow.logger.warning("task %s: subtask %s failed: %s", task.id, subtask.label, message)
        else:
            if subtask.status is SubtaskStatus.CANCELING:
                # The work finished before the cancellation reached it; the operator asked for a
                # stop, so the subtask is FAILED and can be retried (every subtask is idempotent).
                self._finish_cancelled(task, subtask, result.log)
            else:
                task.succeed(subtask, self._now(), result.log, result.context)
        finally:
            self._running.pop(subtask.id, None)
            self._changed = True

    def _finish_cancelled(self, task: Task, subtask: Subtask, log: list[str] | None = None) -> None:
        reason = "aborted with the task" if task.aborted else "cancelled by the operator"
        task.fail(subtask, self._now(), log or [], reason)
        subtask.operation = Operation.CANCEL

    async def _abort(self) -> None:
        """Stop every running subtask, then release the cluster lock if this task holds it."""
        task = self._require_task()
        task.aborted = True
        running = list(self._running.values())
        for handle in running:
            handle.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        lock = task.subtasks[0]
        unlock = task.subtasks[-1]
        holds_lock = lock.executed and unlock.status is not SubtaskStatus.SUCCESSFUL
        lock_stage, unlock_stage = lock.plan.stage, unlock.plan.stage
        if holds_lock and lock_stage and lock_stage.compensation and unlock_stage:
            await workflow.execute_activity(
                unlock_stage.activity,
                self._input_for(task, unlock, Operation.CANCEL.value),
                result_type=SubtaskResult,
                schedule_to_close_timeout=self._scaled(unlock_stage.timeout),
                # A worker lost while it releases the lock is noticed, and the release runs again.
                heartbeat_timeout=self._heartbeat_timeout(unlock_stage),
                summary=f"Abort · {unlock_stage.name} · {task.topology.cluster_name}",
            )
            unlock.append_log(f"############{{CANCEL}}{{{self._now()}}}############")
            unlock.append_log("cluster lock released because the task was aborted")
        task.end_time = self._now()
        self._publish()

    # --- Temporal UI ----------------------------------------------------------------------------

    def _publish(self) -> None:
        task = self._require_task()
        workflow.set_current_details(task.progress_table())
        status = task.search_status
        if status != self._published_status:
            self._published_status = status
            workflow.upsert_search_attributes([TASK_STATUS_KEY.value_set(status)])
            self._tell_fleet(MemberStatus(status))

    # --- the fleet this takeover belongs to, if any -----------------------------------------------

    def _tell_fleet(self, status: MemberStatus, message: str | None = None) -> None:
        """Signal the fleet that started this takeover (if one did) that its status changed. The fleet is
        addressed by workflow id, so a fleet that continued as new gets it in its current run."""
        parent = workflow.info().parent
        if parent is None or not workflow.patched(FLEET_MEMBER_PATCH):
            return
        self._updates_sent += 1
        task = self._task
        failed = next((s for s in task.subtasks if s.status is SubtaskStatus.FAILED), None) if task else None
        update = MemberUpdate(
            workflow_id=workflow.info().workflow_id,
            status=status,
            seq=self._updates_sent,
            run_id=workflow.info().run_id,
            cluster_name=task.topology.cluster_name if task else None,
            task_id=task.id if task else None,
            failed_subtask=f"{failed.name}{' · ' + failed.plan.node if failed.plan.node else ''}" if failed else None,
            message=message or (_failure_of(failed) if failed else None),
        )
        fleet = workflow.get_external_workflow_handle(parent.workflow_id)
        self._updates.append(asyncio.create_task(self._send_update(fleet, update)))

    async def _send_update(self, fleet: workflow.ExternalWorkflowHandle[Any], update: MemberUpdate) -> None:
        try:
            await fleet.signal(MEMBER_UPDATE_SIGNAL, update)
        except Exception as exc:  # the fleet has ended: the takeover goes on without it
            workflow.logger.warning("could not tell fleet %s of status %s: %s", fleet.id, update.status, exc)

    async def _updates_delivered(self) -> None:
        if self._updates:
            await asyncio.gather(*self._updates)

    def _now(self) -> str:
        return format_time(workflow.now())

    def _heartbeat_timeout(self, stage: SubtaskDef) -> timedelta:
        seconds = stage.heartbeat_timeout if workflow.patched(SHORT_HEARTBEAT_PATCH) else stage.first_heartbeat_timeout
        return self._scaled(seconds, MIN_SCALED_HEARTBEAT_SECONDS)

    def _scaled(self, seconds: float, floor: float = MIN_SCALED_TIMEOUT_SECONDS) -> timedelta:
        return timedelta(seconds=max(seconds * self._settings.timeout_scale, floor))


def _failure_of(subtask: Subtask) -> str | None:
    """Why a FAILED subtask failed: its log's last `FAILED:` line."""
    lines = [line for line in subtask.log.splitlines() if line.startswith("FAILED: ")]
    return lines[-1].removeprefix("FAILED: ") if lines else None


def _failure_log(error: ActivityError) -> list[str]:
    """Lines the activity logged before it failed, carried in the failure's details (or, for a
    timeout, in its last heartbeat)."""
    cause = error.cause
    # A timed-out activity cannot report; its last heartbeat carried its latest lines.
    details = cause.last_heartbeat_details if isinstance(cause, TimeoutError) else ()
    if isinstance(cause, ApplicationError):
        details = cause.details
    for detail in details:
        if isinstance(detail, dict) and isinstance(detail.get("log"), list):
            return [str(line) for line in detail["log"]]
    return []


def failure_message(error: ActivityError, timeout: timedelta) -> str:
    """The cause of an activity failure as an operator should read it."""
    cause = error.cause
    if isinstance(cause, TimeoutError):
        if cause.type is TimeoutType.SCHEDULE_TO_CLOSE:
            return f"did not finish within its timeout ({timeout.total_seconds():.0f} s); its log says what it did last"
        if cause.type is TimeoutType.HEARTBEAT:
            return "its worker stopped answering (crashed or hung) on every attempt"
        kind = cause.type.name.lower().replace("_", "-") if cause.type else "timeout"
        return f"timed out ({kind})"
    if isinstance(cause, ApplicationError):
        prefix = f"[{cause.type}] " if cause.type else ""
        return prefix + cause.message
    return str(cause or error)
