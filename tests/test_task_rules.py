"""OCP's task rules on the pure task model, without a Temporal server."""

from __future__ import annotations

import pytest

from contracts.errors import OperationRefused
from contracts.stages import SUBTASKS, activity_names
from contracts.task_view import SubtaskStatus, TaskStatus
from tests.support.fakes import make_topology
from workflows.task import SUBTASK_LOG_LIMIT, Task

pytestmark = pytest.mark.unit

NOW = "2026-11-28T08:00:00.000+00:00"


def new_task(zones: int = 1, per_zone: int = 1) -> Task:
    return Task(1, 100, make_topology(zones, per_zone), "admin", "worker", NOW)


def run_until(task: Task, name: str, fail: bool = True) -> None:
    """Start and finish subtasks in order until `name` runs, which then fails."""
    while True:
        started = task.next_to_start()
        assert started, "nothing left to start"
        for subtask in started:
            task.start(subtask, NOW)
            if fail and subtask.name == name:
                task.fail(subtask, NOW, [], "boom")
                return
            task.succeed(subtask, NOW, [], {})
        if not fail and any(s.name == name and s.status is SubtaskStatus.SUCCESSFUL for s in task.subtasks):
            return


def test_table_has_twenty_stages_with_unique_activities() -> None:
    assert len(SUBTASKS) == 20
    assert len({s.name for s in SUBTASKS}) == 20
    assert "release_cluster_lock" in activity_names()
    assert all(s.timeout > 0 for s in SUBTASKS)


def test_first_subtask_ready_then_chain() -> None:
    task = new_task()
    assert [s.name for s in task.next_to_start()] == ["Mc lock ob clusters"]
    assert task.status is TaskStatus.RUNNING


def test_concurrency_limit_marks_the_rest_ready() -> None:
    task = new_task(3, 10)
    run_until(task, "Register config url", fail=False)
    started = task.next_to_start()
    assert len(started) == 10 and all(s.name == "Run io calibration" for s in started)
    ready = [s for s in task.subtasks if s.status is SubtaskStatus.READY]
    assert len(ready) == 20


def test_retry_requires_failed_task() -> None:
    task = new_task()
    with pytest.raises(OperationRefused, match="only a FAILED task can be retried"):
        task.check_retry()
    run_until(task, "Reserve host")
    assert task.status is TaskStatus.FAILED
    task.check_retry()
    (retried,) = task.apply_retry(NOW)
    assert retried.status is SubtaskStatus.READY and retried.run_time == 2
    assert task.next_to_start() == [retried]


def test_rollback_walks_back_and_ends_pending() -> None:
    task = new_task()
    run_until(task, "Create default user")
    task.check_rollback()
    task.apply_rollback(NOW)
    order = []
    while task.status is TaskStatus.RUNNING:
        for subtask in task.next_to_start():
            task.start(subtask, NOW)
            order.append(subtask.name)
            task.succeed(subtask, NOW, [], {})
    assert order == [
        "Create default user",
        "Reserve host",
        "Prepare take over cluster",
        "Mc lock ob clusters",
    ]
    assert task.status is TaskStatus.SUCCESSFUL and task.search_status == "ROLLED_BACK"
    with pytest.raises(OperationRefused, match="has finished"):
        task.check_retry()


def test_failed_compensation_can_be_retried_or_skipped() -> None:
    task = new_task()
    run_until(task, "Create default user")
    task.apply_rollback(NOW)
    (first,) = task.next_to_start()
    task.start(first, NOW)
    task.fail(first, NOW, [], "cannot drop user")
    assert task.status is TaskStatus.FAILED and task.search_status == "ROLLBACK_FAILED"
    with pytest.raises(OperationRefused, match="rolling back"):
        task.check_retry()
    task.check_skip_subtask(first.id)
    task.apply_skip_subtask(first, NOW)
    assert first.status is SubtaskStatus.PENDING and first.operation.value == "ROLLBACK_SKIP"
    assert [s.name for s in task.next_to_start()] == ["Reserve host"]


def test_subtask_log_is_bounded_keeping_the_newest_lines() -> None:
    task = new_task()
    (lock,) = task.next_to_start()
    task.start(lock, NOW)
    task.succeed(lock, NOW, [f"line {i} " + "x" * 100 for i in range(2000)], {})
    assert len(lock.log) <= SUBTASK_LOG_LIMIT
    assert lock.log.endswith("line 1999 " + "x" * 100 + "\n")
    assert lock.log.startswith("line ")


def test_context_merges_upstreams() -> None:
    task = new_task()
    (lock,) = task.next_to_start()
    task.start(lock, NOW)
    task.succeed(lock, NOW, [], {"lockId": "7"})
    (prepare,) = task.next_to_start()
    task.start(prepare, NOW)
    task.succeed(prepare, NOW, [], {"clusterId": "42"})
    (reserve,) = task.next_to_start()
    assert task.context_for(reserve) == {"lockId": "7", "clusterId": "42"}
    assert task.cluster_id == 42


def test_results_of_takeovers_ended_before_finish_time_was_named_keep_it() -> None:
    """Takeovers that ended before the field was called finishTime recorded it as endTime."""
    from contracts.task_view import TaskView

    old = {
        "id": 1, "name": "Take over primary OB cluster", "creator": "ops", "executor": "w", "operation": "EXECUTE",
        "prohibitRollback": False, "startTime": "2026-01-01T00:00:00.000+00:00",
        "endTime": "2026-01-01T00:01:00.000+00:00", "status": "SUCCESSFUL", "subtasks": [],
    }  # fmt: skip
    view = TaskView.model_validate(old)
    assert view.finish_time == "2026-01-01T00:01:00.000+00:00"
    assert view.model_dump(mode="json")["finishTime"] == view.finish_time
