"""`TakeOverFleet`: many clusters taken over by one workflow, at most `maxConcurrent` at a time.

Each cluster runs as a `TakeOverCluster` child with the workflow id a single takeover of it gets, so the
one-takeover-per-cluster rule holds and operators act on a member's own workflow as on any takeover. A
member that FAILED waits there for its operator and gives its slot to the next cluster; the fleet ends once
every member's workflow has ended. Members outlive the fleet's runs (parent close policy ABANDON): the fleet
continues as new to keep its history bounded, and members signal their status to whichever run is current.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)
from temporalio.workflow import ParentClosePolicy

from contracts.engine import (
    FLEET_QUERY,
    FLEET_WORKFLOW,
    MEMBER_UPDATE_SIGNAL,
    MEMO_CREATOR,
    TAKEOVER_WORKFLOW,
    task_memo,
    workflow_id_for,
)
from contracts.errors import innermost_message
from contracts.fleet import (
    CHECK_FLEET_MEMBERS,
    CLOSED,
    DISCARD_FLEET_MEMBER,
    FIND_MANAGED,
    FLEET_CHECK_SECONDS,
    PREPARE_FLEET_MEMBER,
    WORKING,
    FleetMember,
    FleetState,
    FleetView,
    MemberStart,
    MemberStatus,
    MemberUpdate,
    parse_fleet_request,
)
from contracts.messages import EngineSettings, PreparedTask
from contracts.request import TakeOverRequest
from contracts.stages import LOAD_ENGINE_SETTINGS
from contracts.task_view import Operation, TaskView
from workflows.inputs import parse_or_fail

# Members prepared in the metadb as every takeover is, before they start (fleets started earlier replay
# without it: their members allocate their own ids and carry the fleet file's passwords).
PREPARED_MEMBERS_PATCH = "fleet-members-prepared"
# Rows of the fleet table shown in the Temporal UI's current details (failed and running ones first).
DETAILS_ROWS = 25
# A member's message as the fleet keeps it, at most.
MESSAGE_LIMIT = 500


@workflow.defn(name=FLEET_WORKFLOW)
class TakeOverFleet:
    def __init__(self) -> None:
        self._members: list[FleetMember] = []
        self._by_id: dict[str, int] = {}
        self._pending: dict[int, TakeOverRequest] = {}
        self._seqs: dict[str, int] = {}
        self._max_concurrent = 1
        self._run = 1
        self._starting = 0
        self._following: dict[int, asyncio.Task[None]] = {}
        self._changed = False

    @workflow.run
    async def run(self, body: Any) -> FleetView:
        self._load(body)
        settings = await workflow.execute_local_activity(
            LOAD_ENGINE_SETTINGS, result_type=EngineSettings, start_to_close_timeout=timedelta(seconds=10)
        )
        workflow.logger.info(
            "fleet run %d: %d clusters, %d not started, at most %d at once",
            self._run,
            len(self._members),
            len(self._pending),
            self._max_concurrent,
        )
        if self._run == 1:
            await self._skip_managed()
        while True:
            self._start_next()
            view = self._publish()
            if view.finished:
                await workflow.wait_condition(workflow.all_handlers_finished)
                return self._view()
            if self._history_full(settings.fleet_history_events):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state().model_dump(mode="json", exclude_none=True))
            # A closed status a signal claimed is checked soon; otherwise the members are checked when the
            # fleet has heard nothing for a while.
            unconfirmed = any(m.status in CLOSED and not m.confirmed for m in self._members)
            wait = FLEET_CHECK_SECONDS * settings.timeout_scale / (20 if unconfirmed else 1)
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=timedelta(seconds=max(wait, 1.0)))
            except TimeoutError:
                await self._check_members()
            self._changed = False

    def _load(self, body: Any) -> None:
        """A new fleet's request, or the state the run it continues handed over."""
        if workflow.info().continued_run_id is not None:
            state = FleetState.model_validate(body)
            self._members = list(state.members)
            self._pending = dict(state.pending)
            self._seqs = dict(state.seqs)
            self._max_concurrent = state.max_concurrent
            self._run = state.run
        else:
            request = parse_or_fail(parse_fleet_request, body)
            self._members = [
                FleetMember(index=index, workflow_id=workflow_id_for(c.address, c.port), endpoint=c.endpoint)
                for index, c in enumerate(request.requests)
            ]
            self._pending = dict(enumerate(request.requests))
            self._max_concurrent = request.max_concurrent
        self._by_id = {member.workflow_id: member.index for member in self._members}

    # --- queries and signals --------------------------------------------------------------------

    @workflow.query(name=FLEET_QUERY)
    def fleet(self) -> FleetView:
        return self._view()

    @workflow.signal(name=MEMBER_UPDATE_SIGNAL)
    def member_update(self, update: MemberUpdate) -> None:
        """A member's status change. Only the member's own run is heard (once the fleet knows it), in order;
        a closed status it claims counts once the fleet has seen the run end."""
        index = self._by_id.get(update.workflow_id)
        if index is None or update.confirmed:
            return
        member = self._members[index]
        if member.status is MemberStatus.PENDING or member.done:
            return
        if member.run_id is not None and update.run_id != member.run_id:
            return
        key = f"{update.run_id}:{update.workflow_id}"
        if update.seq <= self._seqs.get(key, 0):
            return
        self._seqs[key] = update.seq
        self._apply(index, update)

    def _apply(self, index: int, update: MemberUpdate) -> None:
        member = self._members[index]
        self._set(
            index,
            update.status,
            cluster_name=update.cluster_name or member.cluster_name,
            task_id=update.task_id or member.task_id,
            failed_subtask=update.failed_subtask,
            message=(update.message or "")[:MESSAGE_LIMIT] or None,
            run_id=member.run_id or update.run_id,
            confirmed=update.confirmed,
        )

    async def _skip_managed(self) -> None:
        """A cluster already under management is not started again (its takeover would fail its precheck and
        wait, holding the cluster's lock): running a fleet file again takes over only what is left."""
        pending = sorted(self._pending)
        endpoints = [[self._pending[i].address, self._pending[i].port] for i in pending]
        managed: dict[int, str] = await workflow.execute_activity(
            FIND_MANAGED,
            endpoints,
            result_type=dict[int, str],
            start_to_close_timeout=timedelta(seconds=60),
            summary=f"Find which of {len(pending)} clusters are managed already",
        )
        for position, cluster in sorted(managed.items()):
            index = pending[int(position)]
            del self._pending[index]
            self._set(index, MemberStatus.NOT_STARTED, message=f"already managed here: {cluster}", confirmed=True)

    async def _check_members(self) -> None:
        """Read the started members' workflows: a member that ended without telling the fleet (terminated,
        timed out) is closed, and a closed status a signal claimed is confirmed or taken back."""
        started = [m for m in self._members if m.status is not MemberStatus.PENDING and not m.done]
        if not started:
            return
        found: list[MemberUpdate] = await workflow.execute_activity(
            CHECK_FLEET_MEMBERS,
            [{"workflowId": m.workflow_id, "runId": m.run_id} for m in started],
            result_type=list[MemberUpdate],
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=20),
            summary=f"Check {len(started)} fleet members",
        )
        for update in found:
            index = self._by_id.get(update.workflow_id)
            if index is not None and not self._members[index].done:
                self._apply(index, update)

    # --- members -------------------------------------------------------------------------------

    def _start_next(self) -> None:
        working = sum(member.status in WORKING for member in self._members)
        while working < self._max_concurrent and self._pending:
            index = min(self._pending)
            request = self._pending.pop(index)
            self._set(index, MemberStatus.CREATING)
            working += 1
            self._starting += 1
            self._following[index] = asyncio.create_task(self._member(index, request))

    async def _member(self, index: int, request: TakeOverRequest) -> None:
        """Start one member and follow it to its end (within this run; later runs learn from its signals)."""
        member = self._members[index]
        creator = str(workflow.memo_value(MEMO_CREATOR, "temporal"))
        prepared: PreparedTask | None = None
        body: dict[str, Any] = request.model_dump(mode="json", exclude_none=True)
        memo: dict[str, Any] = {MEMO_CREATOR: creator}
        try:
            if workflow.patched(PREPARED_MEMBERS_PATCH):
                # Prepared as every takeover is: ids, task row, passwords into the password box.
                prepared = await workflow.execute_local_activity(
                    PREPARE_FLEET_MEMBER,
                    MemberStart(request=request, workflow_id=member.workflow_id, creator=creator),
                    result_type=PreparedTask,
                    start_to_close_timeout=timedelta(seconds=30),
                )
                body, memo = prepared.input, task_memo(creator, None, prepared.task_id, prepared.cluster_id)
            handle: workflow.ChildWorkflowHandle[Any, TaskView] = await workflow.start_child_workflow(
                TAKEOVER_WORKFLOW,
                body,
                id=member.workflow_id,
                task_queue=workflow.info().task_queue,
                parent_close_policy=ParentClosePolicy.ABANDON,
                memo=memo,
                result_type=TaskView,
                static_summary=f"Take over {member.endpoint} · fleet {workflow.info().workflow_id}",
            )
        except WorkflowAlreadyStartedError:
            if prepared is not None:
                await workflow.execute_local_activity(
                    DISCARD_FLEET_MEMBER, prepared, start_to_close_timeout=timedelta(seconds=30)
                )
            message = f"a takeover of this cluster is already running as workflow {member.workflow_id}"
            self._set(index, MemberStatus.NOT_STARTED, message=message, confirmed=True)
            return
        finally:
            self._starting -= 1
            self._changed = True
        self._members[index] = self._members[index].model_copy(update={"run_id": handle.first_execution_run_id})
        try:
            view: TaskView = await handle
        except ChildWorkflowError as exc:
            if is_cancelled_exception(exc):
                self._set(index, MemberStatus.ABORTED, message="aborted", confirmed=True)
            elif self._members[index].task_id is None:
                self._set(index, MemberStatus.NOT_STARTED, message=innermost_message(exc), confirmed=True)
            else:
                self._set(index, MemberStatus.ABORTED, message=innermost_message(exc), confirmed=True)
            return
        rolled_back = view.operation is Operation.ROLLBACK
        self._set(
            index,
            MemberStatus.ROLLED_BACK if rolled_back else MemberStatus.SUCCESSFUL,
            task_id=view.id,
            failed_subtask=None,
            message=None,
            confirmed=True,
        )

    def _set(self, index: int, status: MemberStatus, **changes: Any) -> None:
        member = self._members[index]
        self._members[index] = member.model_copy(update={"status": status, **changes})
        if status is not member.status:
            workflow.logger.info("fleet: %s is %s", member.workflow_id, status.value)
        self._changed = True

    # --- state ---------------------------------------------------------------------------------

    def _history_full(self, limit: int) -> bool:
        """Whether to continue as new: the history is long and no member is being started right now."""
        info = workflow.info()
        long = info.get_current_history_length() >= limit or info.is_continue_as_new_suggested()
        return long and self._starting == 0

    def _state(self) -> FleetState:
        return FleetState(
            max_concurrent=self._max_concurrent,
            members=self._members,
            pending=self._pending,
            run=self._run + 1,
            seqs=self._seqs,
        )

    def _view(self) -> FleetView:
        return FleetView(max_concurrent=self._max_concurrent, members=self._members, run=self._run)

    def _publish(self) -> FleetView:
        """The fleet table in the UI's current details (failed members first); returns the view shown."""
        view = self._view()
        order = {MemberStatus.FAILED: 0, MemberStatus.ROLLBACK_FAILED: 0, MemberStatus.NOT_STARTED: 1}
        shown = sorted(
            (m for m in view.members if m.status is not MemberStatus.SUCCESSFUL),
            key=lambda m: (order.get(m.status, 2), m.index),
        )
        lines = [
            f"**Fleet** · {len(view.members)} clusters · {view.counts_line} · at most {view.max_concurrent} at once",
            "",
            "| cluster | workflow | status | failed subtask |",
            "|---|---|---|---|",
        ]
        for member in shown[:DETAILS_ROWS]:
            lines.append(
                f"| {member.cluster_name or member.endpoint} | {member.workflow_id} | {member.status.value} "
                f"| {member.failed_subtask or member.message or '-'} |"
            )
        if len(shown) > DETAILS_ROWS:
            lines.append(f"| … | {len(shown) - DETAILS_ROWS} more | | |")
        workflow.set_current_details("\n".join(lines))
        return view
