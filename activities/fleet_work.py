"""The fleet's check of its members: each member's workflow as Temporal tells it, not as signals did."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from activities.failures import project_activity
from contracts.errors import innermost_message
from contracts.fleet import (
    CHECK_FLEET_MEMBERS,
    DISCARD_FLEET_MEMBER,
    FIND_MANAGED,
    PREPARE_FLEET_MEMBER,
    MemberStart,
    MemberStatus,
    MemberUpdate,
)
from contracts.messages import PreparedTask
from contracts.task_view import Operation, TaskView
from metadb import clusters, task_starts
from metadb.db import Database
from metadb.vault import Vault

# How a member's workflow that ended without a result stands in the fleet table.
_ENDED = {
    WorkflowExecutionStatus.CANCELED: (MemberStatus.ABORTED, "aborted"),
    WorkflowExecutionStatus.TERMINATED: (MemberStatus.ABORTED, "its workflow was terminated"),
    WorkflowExecutionStatus.TIMED_OUT: (MemberStatus.ABORTED, "its workflow timed out"),
}


def check_fleet_members_activity() -> Callable[..., Any]:
    @project_activity(CHECK_FLEET_MEMBERS)
    async def check_fleet_members(members: list[dict[str, Any]]) -> list[MemberUpdate]:
        """For each `{"workflowId", "runId"}`: nothing while its run goes on; its end once it has ended."""
        client = activity.client()
        found = []
        for member in members:
            activity.heartbeat()
            workflow_id, run_id = str(member["workflowId"]), member.get("runId")
            handle = client.get_workflow_handle(workflow_id, run_id=run_id, result_type=TaskView)
            try:
                status = (await handle.describe()).status
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                found.append(_ended(workflow_id, run_id, MemberStatus.ABORTED, "its workflow no longer exists"))
                continue
            if status in (None, WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
                found.append(MemberUpdate(workflow_id=workflow_id, status=MemberStatus.RUNNING, seq=0, run_id=run_id))
            elif status == WorkflowExecutionStatus.COMPLETED:
                view: TaskView = await handle.result()
                done = MemberStatus.ROLLED_BACK if view.operation is Operation.ROLLBACK else MemberStatus.SUCCESSFUL
                found.append(
                    MemberUpdate(
                        workflow_id=workflow_id, status=done, seq=0, run_id=run_id, task_id=view.id, confirmed=True
                    )
                )
            elif status == WorkflowExecutionStatus.FAILED:
                try:
                    await handle.result()
                    message = "its workflow failed"
                except WorkflowFailureError as exc:
                    message = innermost_message(exc)
                found.append(_ended(workflow_id, run_id, MemberStatus.NOT_STARTED, message))
            else:
                member_status, message = _ENDED.get(status, (MemberStatus.ABORTED, f"its workflow ended {status.name}"))
                found.append(_ended(workflow_id, run_id, member_status, message))
        return [update for update in found if update.confirmed]

    return check_fleet_members


def find_managed_activity(db: Database) -> Callable[..., Any]:
    @project_activity(FIND_MANAGED)
    async def find_managed_endpoints(endpoints: list[list[Any]]) -> dict[int, str]:
        """For each `[address, port]` that a managed cluster is recorded at: its position and the cluster."""

        def find() -> dict[int, str]:
            managed = {
                (row["address"], int(row["port"])): f"{row['name']} (cluster {row['id']}, {row['status']})"
                for row in clusters.list_clusters(db)
                if row["status"] != clusters.TAKINGOVER
            }
            return {
                index: managed[(str(address), int(port))]
                for index, (address, port) in enumerate(endpoints)
                if (str(address), int(port)) in managed
            }

        return await asyncio.to_thread(find)

    return find_managed_endpoints


def prepare_fleet_member_activities(db: Database, vault: Vault) -> list[Callable[..., Any]]:
    """A member prepared as every takeover is (`metadb.task_starts`), and the undo when it does not start."""

    @project_activity(PREPARE_FLEET_MEMBER)
    async def prepare_fleet_member(member: MemberStart) -> PreparedTask:
        return await asyncio.to_thread(
            task_starts.prepare_takeover, db, vault, member.request,
            workflow_id=member.workflow_id, creator=member.creator, trace_id=None,
        )  # fmt: skip

    @project_activity(DISCARD_FLEET_MEMBER)
    async def discard_fleet_member(prepared: PreparedTask) -> None:
        await asyncio.to_thread(task_starts.discard, db, prepared)

    return [prepare_fleet_member, discard_fleet_member]


def _ended(workflow_id: str, run_id: str | None, status: MemberStatus, message: str) -> MemberUpdate:
    return MemberUpdate(workflow_id=workflow_id, status=status, seq=0, run_id=run_id, message=message, confirmed=True)
