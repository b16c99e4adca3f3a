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
