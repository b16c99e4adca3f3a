"""The takeover task as OCP models it: subtask states, operator operations and the task JSON.

Everything here is pure and deterministic, so the workflow can drive it and unit tests can exercise
OCP's rules without a Temporal server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from contracts.errors import OperationRefused
from contracts.stages import MAX_PARALLEL_SUBTASKS, SUBTASKS, SubtaskDef
from contracts.task_view import (
    Operation,
    RecordedStatus,
    SubtaskStatus,
    SubtaskView,
    TaskStatus,
    TaskView,
    recorded_status,
    task_name,
)
from contracts.topology import Topology
from workflows.plan import PlannedSubtask, build_plan

# The log of one subtask keeps at most this many characters, dropping the oldest first.
SUBTASK_LOG_LIMIT = 64 * 1024


def format_time(moment: datetime) -> str:
    """OCP's timestamp format: ISO 8601 with milliseconds and the UTC offset."""
    return moment.isoformat(timespec="milliseconds")


@dataclass
class Subtask:
    """A subtask's plan and its mutable state."""

    id: int
    plan: PlannedSubtask
    status: SubtaskStatus = SubtaskStatus.PENDING
    operation: Operation = Operation.EXECUTE
    run_time: int = 1
    start_time: str | None = None
    end_time: str | None = None
    # Set once the subtask's work has started; a rollback then runs its compensation.
    executed: bool = False
    # Values this subtask reported for its downstreams (OCP's task context).
    context: dict[str, str] = field(default_factory=dict)
    log: str = ""

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def prohibit_skip(self) -> bool:
        return bool(self.plan.stage and self.plan.stage.prohibit_skip)

    @property
    def prohibit_rollback(self) -> bool:
        return bool(self.plan.stage and self.plan.stage.prohibit_rollback)

    @property
    def label(self) -> str:
        """How messages name the subtask: `17 (Sync cluster info)`."""
        node = f" on {self.plan.node}" if self.plan.node else ""
        return f"{self.id} ({self.name}{node})"

    def append_log(self, text: str) -> None:
        log = self.log + text.rstrip("\n") + "\n"
        if len(log) > SUBTASK_LOG_LIMIT:
            log = log[-SUBTASK_LOG_LIMIT:]
            log = log[log.find("\n") + 1 :]
        self.log = log

    def view(self, id_of: dict[int, int], create_time: str) -> SubtaskView:
        return SubtaskView(
            id=self.id,
            name=self.name,
            description=self.name,
            operation=self.operation,
            parallel_idx=self.plan.parallel_idx,
            prohibit_rollback=self.prohibit_rollback,
            prohibit_skip=self.prohibit_skip,
            run_time=self.run_time,
            series_id=self.plan.series_id,
            status=self.status,
            timeout=self.plan.timeout,
            upstreams=[id_of[u] for u in self.plan.upstreams],
            downstreams=[id_of[d] for d in self.plan.downstreams],
            create_time=create_time,
            start_time=self.start_time,
            finish_time=self.end_time,
            node_kind=self.plan.node_kind,
            node=self.plan.node,
        )


class Task:
    """A takeover task: its subtask graph, OCP's scheduling rules and its operator operations.

    In EXECUTE mode subtasks run in graph order; in ROLLBACK mode each executed subtask's
    compensation runs in reverse graph order and the subtask returns to PENDING.
    """

    def __init__(
        self,
        task_id: int,
        first_subtask_id: int,
        topology: Topology,
        creator: str,
        executor: str,
        start_time: str,
        cluster_id: int | None = None,
        stages: Sequence[SubtaskDef] = SUBTASKS,
        name: str | None = None,
    ) -> None:
        self.id = task_id
        self._name = name
        self.topology = topology
        self.creator = creator
        self.executor = executor
        self.start_time = start_time
        # The id allocated for the cluster before the task started (REST API), until its record exists.
        self.allocated_cluster_id = cluster_id
        self.end_time: str | None = None
        self.rolling_back = False
        self.aborted = False
        self.subtasks = [
            Subtask(id=first_subtask_id + planned.series_id, plan=planned) for planned in build_plan(topology, stages)
        ]
        self._by_id = {subtask.id: subtask for subtask in self.subtasks}
        self._id_of = {subtask.plan.series_id: subtask.id for subtask in self.subtasks}

    @property
    def name(self) -> str:
        return self._name or task_name(self.topology.standby)

    @property
    def operation(self) -> Operation:
        return Operation.ROLLBACK if self.rolling_back else Operation.EXECUTE

    @property
    def prohibit_rollback(self) -> bool:
        return any(s.executed and s.prohibit_rollback for s in self.subtasks)

    @property
    def status(self) -> TaskStatus:
        statuses = {s.status for s in self.subtasks}
        if statuses & {SubtaskStatus.RUNNING, SubtaskStatus.CANCELING, SubtaskStatus.READY}:
            return TaskStatus.RUNNING
        if SubtaskStatus.FAILED in statuses:
            return TaskStatus.FAILED
        final = SubtaskStatus.PENDING if self.rolling_back else SubtaskStatus.SUCCESSFUL
        return TaskStatus.SUCCESSFUL if statuses == {final} else TaskStatus.RUNNING

    @property
    def finished(self) -> bool:
        return self.status is TaskStatus.SUCCESSFUL

    @property
    def cluster_id(self) -> int | None:
        for subtask in self.subtasks:
            if "clusterId" in subtask.context:
                return int(subtask.context["clusterId"])
        return self.allocated_cluster_id

    @property
    def search_status(self) -> RecordedStatus:
        """The value of the `ObTaskStatus` search attribute."""
        return recorded_status(self.status, self.operation, aborted=self.aborted)

    def subtask(self, subtask_id: int) -> Subtask:
        try:
            return self._by_id[subtask_id]
        except KeyError:
            raise OperationRefused(f"task {self.id} has no subtask {subtask_id}") from None

    def context_for(self, subtask: Subtask) -> dict[str, str]:
        """The merge of the contexts of every subtask this one transitively depends on."""
        merged: dict[str, str] = {}
        seen: set[int] = set()
        stack = list(subtask.plan.upstreams)
        while stack:
            series_id = stack.pop()
            if series_id in seen:
                continue
            seen.add(series_id)
            stack.extend(self.subtasks[series_id].plan.upstreams)
        for series_id in sorted(seen):
            merged.update(self.subtasks[series_id].context)
        return merged

    # --- scheduling -------------------------------------------------------------------------

    def _neighbours_done(self, subtask: Subtask) -> bool:
        if self.rolling_back:
            # A compensation runs once everything that depends on the subtask has been undone.
            return all(self.subtasks[d].status is SubtaskStatus.PENDING for d in subtask.plan.downstreams)
        return all(self.subtasks[u].status is SubtaskStatus.SUCCESSFUL for u in subtask.plan.upstreams)

    def _needs_run(self, subtask: Subtask) -> bool:
        if self.rolling_back:
            return subtask.status in (SubtaskStatus.SUCCESSFUL, SubtaskStatus.READY)
        return subtask.status in (SubtaskStatus.PENDING, SubtaskStatus.READY)

    def next_to_start(self) -> list[Subtask]:
        """Subtasks to start now, respecting the graph and OCP's limit of 10 at a time.

        In EXECUTE mode, subtasks whose upstreams are done but which wait for a free slot are
        marked READY, as OCP shows them.
        """
        if self.aborted:
            return []
        busy = sum(s.status in (SubtaskStatus.RUNNING, SubtaskStatus.CANCELING) for s in self.subtasks)
        order = reversed(self.subtasks) if self.rolling_back else iter(self.subtasks)
        chosen: list[Subtask] = []
        for subtask in order:
            if not (self._needs_run(subtask) and self._neighbours_done(subtask)):
                continue
            if busy + len(chosen) < MAX_PARALLEL_SUBTASKS:
                chosen.append(subtask)
            elif not self.rolling_back:
                subtask.status = SubtaskStatus.READY
        return chosen

    def start(self, subtask: Subtask, now: str) -> None:
        subtask.status = SubtaskStatus.RUNNING
        subtask.start_time = now
        subtask.end_time = None
        if not self.rolling_back:
            subtask.executed = True
        subtask.append_log(f"############{{{subtask.operation.value}}}{{{now}}}############")

    def succeed(self, subtask: Subtask, now: str, log: list[str], context: dict[str, str]) -> None:
        for line in log:
            subtask.append_log(line)
        subtask.end_time = now
        if self.rolling_back:
            subtask.status = SubtaskStatus.PENDING
            subtask.executed = False
            subtask.context = {}
        else:
            subtask.status = SubtaskStatus.SUCCESSFUL
            subtask.context = dict(context)
        self._touch_end(now)

    def fail(self, subtask: Subtask, now: str, log: list[str], message: str) -> None:
        for line in log:
            subtask.append_log(line)
        subtask.append_log(f"FAILED: {message}")
        subtask.status = SubtaskStatus.FAILED
        subtask.end_time = now
        self._touch_end(now)

    def _touch_end(self, now: str) -> None:
        self.end_time = now if self.status is not TaskStatus.RUNNING else None

    # --- operator operations: check_* raise OperationRefused, apply_* change the state ------------

    def _require_task(self) -> None:
        if self.aborted:
            raise OperationRefused(f"task {self.id} was aborted")
        if self.finished:
            raise OperationRefused(f"task {self.id} has finished; there is nothing to change")

    def check_retry(self) -> None:
        self._require_task()
        if self.rolling_back:
            raise OperationRefused(f"task {self.id} is rolling back; run rollback again to retry failed compensations")
        if self.status is not TaskStatus.FAILED:
            raise OperationRefused(f"task {self.id} is {self.status.value}; only a FAILED task can be retried")

    def apply_retry(self, now: str) -> list[Subtask]:
        failed = [s for s in self.subtasks if s.status is SubtaskStatus.FAILED]
        for subtask in failed:
            self._make_ready(subtask, Operation.RETRY, now)
        return failed

    def check_retry_subtask(self, subtask_id: int) -> Subtask:
        self._require_task()
        subtask = self.subtask(subtask_id)
        if subtask.status is not SubtaskStatus.FAILED:
            raise OperationRefused(
                f"subtask {subtask_id} is {subtask.status.value}; only a FAILED subtask can be retried"
            )
        return subtask

    def apply_retry_subtask(self, subtask: Subtask, now: str) -> None:
        operation = Operation.ROLLBACK if self.rolling_back else Operation.RETRY
        self._make_ready(subtask, operation, now)

    def check_skip_subtask(self, subtask_id: int) -> Subtask:
        self._require_task()
        subtask = self.subtask(subtask_id)
        if subtask.status is not SubtaskStatus.FAILED:
            raise OperationRefused(
                f"subtask {subtask_id} is {subtask.status.value}; only a FAILED subtask can be skipped"
            )
        if subtask.prohibit_skip and not self.rolling_back:
            raise OperationRefused(f"subtask {subtask.label} must not be skipped (prohibitSkip)")
        return subtask

    def apply_skip_subtask(self, subtask: Subtask, now: str) -> None:
        subtask.end_time = now
        if self.rolling_back:
            subtask.operation = Operation.ROLLBACK_SKIP
            subtask.status = SubtaskStatus.PENDING
            subtask.executed = False
            subtask.append_log(f"############{{ROLLBACK_SKIP}}{{{now}}}############")
        else:
            subtask.operation = Operation.SKIP
            subtask.status = SubtaskStatus.SUCCESSFUL
            subtask.append_log(f"############{{SKIP}}{{{now}}}############")
        self._touch_end(now)

    def check_cancel_subtask(self, subtask_id: int) -> Subtask:
        self._require_task()
        subtask = self.subtask(subtask_id)
        if subtask.status is not SubtaskStatus.RUNNING:
            raise OperationRefused(
                f"subtask {subtask_id} is {subtask.status.value}; only a RUNNING subtask can be cancelled"
            )
        return subtask

    def apply_cancel_subtask(self, subtask: Subtask, now: str) -> None:
        subtask.status = SubtaskStatus.CANCELING
        subtask.operation = Operation.CANCEL
        subtask.append_log(f"############{{CANCEL}}{{{now}}}############")

    def check_rollback(self) -> None:
        self._require_task()
        if self.status is not TaskStatus.FAILED:
            raise OperationRefused(f"task {self.id} is {self.status.value}; only a FAILED task can be rolled back")
        blocking = [s for s in self.subtasks if s.executed and s.prohibit_rollback]
        if blocking:
            raise OperationRefused(
                f"task {self.id} cannot be rolled back: subtask {blocking[0].label} has run "
                "and cannot be undone (prohibitRollback)"
            )

    def apply_rollback(self, now: str) -> None:
        self.rolling_back = True
        self.end_time = None
        for subtask in self.subtasks:
            if subtask.executed:
                if subtask.status is SubtaskStatus.FAILED:
                    self._make_ready(subtask, Operation.ROLLBACK, now)
                else:
                    subtask.operation = Operation.ROLLBACK
            else:
                subtask.status = SubtaskStatus.PENDING

    def _make_ready(self, subtask: Subtask, operation: Operation, now: str) -> None:
        subtask.status = SubtaskStatus.READY
        subtask.operation = operation
        subtask.run_time += 1
        self.end_time = None

    # --- views --------------------------------------------------------------------------------

    def view(self) -> TaskView:
        return TaskView(
            id=self.id,
            name=self.name,
            cluster_id=self.cluster_id,
            creator=self.creator,
            executor=self.executor,
            operation=self.operation,
            prohibit_rollback=self.prohibit_rollback,
            create_time=self.start_time,
            start_time=self.start_time,
            finish_time=self.end_time,
            status=self.status,
            subtasks=[s.view(self._id_of, self.start_time) for s in self.subtasks],
        )

    def progress_table(self) -> str:
        """A short Markdown summary for the Temporal UI's current details."""
        done = sum(s.status is SubtaskStatus.SUCCESSFUL for s in self.subtasks)
        lines = [
            f"**{self.name}** {self.topology.cluster_name} · {self.search_status} · "
            f"{done}/{len(self.subtasks)} subtasks successful",
            "",
            "| id | subtask | node | status |",
            "|---|---|---|---|",
        ]
        shown = [
            s
            for s in self.subtasks
            if s.status in (SubtaskStatus.RUNNING, SubtaskStatus.CANCELING, SubtaskStatus.FAILED)
        ]
        for subtask in shown[:12]:
            lines.append(f"| {subtask.id} | {subtask.name} | {subtask.plan.node or '-'} | {subtask.status.value} |")
        if len(shown) > 12:
            lines.append(f"| … | {len(shown) - 12} more | | |")
        return "\n".join(lines)
