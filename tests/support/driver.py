"""Driving a takeover from tests: start it, wait for a state, run operator updates."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from contracts.messages import SubtaskRef
from contracts.task_view import SubtaskView, TaskView
from workflows.takeover import TakeOverCluster

BODY: dict[str, Any] = {"rootSysPassword": "S3cret!pw", "address": "127.0.0.1", "port": 2881}
Handle = WorkflowHandle[TakeOverCluster, TaskView]


async def start(
    client: Client,
    task_queue: str,
    body: dict[str, Any] | None = None,
    workflow_id: str | None = None,
) -> Handle:
    return await client.start_workflow(
        TakeOverCluster.run,
        BODY if body is None else body,
        id=workflow_id or f"takeover-test-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )


async def task_of(handle: Handle) -> TaskView:
    return await handle.query(TakeOverCluster.task)


async def log_of(handle: Handle, subtask_id: int) -> str:
    return await handle.query(TakeOverCluster.subtask_log, SubtaskRef(subtask_id=subtask_id))


async def wait_for(handle: Handle, predicate: Callable[[TaskView], bool], timeout: float = 20) -> TaskView:
    """Poll the `task` query until `predicate` holds; fail with the task's state after `timeout`."""
    deadline = time.monotonic() + timeout
    last: TaskView | None = None
    closed_since: float | None = None
    while time.monotonic() < deadline:
        try:
            last = await task_of(handle)
        except Exception:  # the task does not exist while the topology is read, or no worker answered
            last = None
            status = (await handle.describe()).status
            if status is not None and status is not WorkflowExecutionStatus.RUNNING:
                # A closed workflow still answers queries once a worker replays it; one that keeps
                # failing for a few seconds never had a task.
                closed_since = closed_since or time.monotonic()
                if time.monotonic() - closed_since > 5:
                    raise AssertionError(f"the workflow ended {status.name} before its task existed") from None
        if last is not None and predicate(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not reached; task is {describe(last)}")


def describe(task: TaskView | None) -> str:
    if task is None:
        return "not created"
    active = [f"{s.id}:{s.name}:{s.status.value}" for s in task.subtasks if s.status.value != "PENDING"]
    return f"{task.status.value} with {', '.join(active)}"


def named(task: TaskView, name: str) -> list[SubtaskView]:
    return [s for s in task.subtasks if s.name == name]


def failed(task: TaskView) -> bool:
    return task.status.value == "FAILED"


async def update(handle: Handle, name: str, subtask_id: int | None = None) -> TaskView:
    args = [SubtaskRef(subtask_id=subtask_id)] if subtask_id is not None else []
    task: TaskView = await handle.execute_update(name, args=args, result_type=TaskView)
    return task


async def refusal(handle: Handle, name: str, subtask_id: int | None = None) -> str:
    """The message of a refused operator update."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await update(handle, name, subtask_id)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    return cause.message


HISTORIES = Path(__file__).resolve().parents[1] / "histories"
RECORD_ENV = "OB_TAKEOVER_RECORD_HISTORIES"


async def keep_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """Save the workflow's history for the replay test when OB_TAKEOVER_RECORD_HISTORIES=1.

    Recorded histories are checked in; replaying them in CI catches changes that would break
    takeovers already running.
    """
    if os.environ.get(RECORD_ENV) != "1":
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")
