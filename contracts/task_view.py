"""OCP's task JSON: what the `task` query, the workflow's result and the REST API return."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AliasChoices, Field

from contracts.model import Model


class SubtaskStatus(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    RUNNING = "RUNNING"
    CANCELING = "CANCELING"
    FAILED = "FAILED"
    SUCCESSFUL = "SUCCESSFUL"


class Operation(StrEnum):
    EXECUTE = "EXECUTE"
    RETRY = "RETRY"
    ROLLBACK = "ROLLBACK"
    SKIP = "SKIP"
    ROLLBACK_SKIP = "ROLLBACK_SKIP"
    CANCEL = "CANCEL"


class TaskStatus(StrEnum):
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    SUCCESSFUL = "SUCCESSFUL"


class RecordedStatus(StrEnum):
    """A task's status as recorded: in the task registry (the metadb's `tasks.status`) and in the `ObTaskStatus`
    search attribute. OCP's `TaskStatus` plus the rollback's and the abort's own words. The values are stored
    and read by operators and scripts: never rename one."""

    CREATING = "CREATING"  # the search attribute's first value: the workflow reads the topology, no task yet
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    SUCCESSFUL = "SUCCESSFUL"
    ROLLING_BACK = "ROLLING_BACK"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"
    ROLLED_BACK = "ROLLED_BACK"
    ABORTED = "ABORTED"
    REJECTED = "REJECTED"  # registry only: the task's workflow never started; no list shows the task


# The registry's end states: a task in one of them has released its cluster and never runs again.
FINISHED = frozenset({RecordedStatus.SUCCESSFUL, RecordedStatus.ROLLED_BACK, RecordedStatus.ABORTED})

# The task's status while it rolls back, by OCP's status of the rollback.
_ROLLBACK_STATUS = {
    TaskStatus.RUNNING: RecordedStatus.ROLLING_BACK,
    TaskStatus.FAILED: RecordedStatus.ROLLBACK_FAILED,
    TaskStatus.SUCCESSFUL: RecordedStatus.ROLLED_BACK,
}

# The registry's end status by the operation that released the task's cluster lock.
_END_STATUS: dict[str, RecordedStatus] = {
    Operation.EXECUTE: RecordedStatus.SUCCESSFUL,
    Operation.RETRY: RecordedStatus.SUCCESSFUL,
    Operation.ROLLBACK: RecordedStatus.ROLLED_BACK,
    Operation.CANCEL: RecordedStatus.ABORTED,
}

# The registry's end states as OCP's task statuses, for a task whose workflow is past Temporal's retention.
_OCP_STATUS: dict[str, TaskStatus] = {
    RecordedStatus.SUCCESSFUL: TaskStatus.SUCCESSFUL,
    RecordedStatus.ROLLED_BACK: TaskStatus.SUCCESSFUL,
    RecordedStatus.ABORTED: TaskStatus.FAILED,
}


def recorded_status(status: TaskStatus, operation: Operation, *, aborted: bool = False) -> RecordedStatus:
    """The `ObTaskStatus` of a task in OCP's `status` whose operation is `operation` (ROLLBACK while it
    rolls back); an aborted task is ABORTED."""
    if aborted:
        return RecordedStatus.ABORTED
    if operation == Operation.ROLLBACK:
        return _ROLLBACK_STATUS[status]
    return RecordedStatus(status.value)


def end_status(operation: str) -> str:
    """The registry's status of a task whose cluster lock a subtask run as `operation` released; an
    operation that does not end a task is recorded as itself."""
    return _END_STATUS.get(operation, operation)


def ocp_status(recorded: str) -> TaskStatus:
    """OCP's status of a task known only by its registry row: SUCCESSFUL once it succeeded or was rolled
    back, else FAILED (aborted, or its workflow gone before it ended)."""
    return _OCP_STATUS.get(recorded, TaskStatus.FAILED)


class SubtaskView(Model):
    """A subtask in OCP's task JSON, plus where it works (`nodeKind`, `node`)."""

    id: int
    name: str
    description: str
    node_type: str = "JAVA_TASK"
    operation: Operation
    parallel_idx: int
    prohibit_rollback: bool
    prohibit_skip: bool
    run_time: int
    series_id: int
    status: SubtaskStatus
    timeout: int
    upstreams: list[int]
    downstreams: list[int]
    create_time: str | None = None
    start_time: str | None = None
    # Results of takeovers that ended before this field was named so carry it as endTime.
    finish_time: str | None = Field(None, validation_alias=AliasChoices("finishTime", "finish_time", "endTime"))
    node_kind: str
    node: str | None = None


class TaskView(Model):
    """OCP's task JSON: the `data` object of the takeover API's reply."""

    id: int
    name: str
    cluster_id: int | None = None
    creator: str
    executor: str
    operation: Operation
    prohibit_rollback: bool
    create_time: str | None = None
    start_time: str
    finish_time: str | None = Field(None, validation_alias=AliasChoices("finishTime", "finish_time", "endTime"))
    status: TaskStatus
    task_definition_id: int = -1
    type: str = "MANUAL"
    subtasks: list[SubtaskView]


def task_name(standby: bool) -> str:
    """OCP's name of a takeover task."""
    return f"Take over {'standby' if standby else 'primary'} OB cluster"
