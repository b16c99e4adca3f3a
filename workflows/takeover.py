"""`TakeOverCluster`: OCP's takeover task as a durable Temporal workflow.

The workflow learns the cluster's topology, expands the subtask table into the task graph and walks
it on the shared engine (`workflows.engine`): each subtask is one activity, scheduled with its table
timeout. A FAILED task waits durably for an operator update (retry, retry_subtask, skip_subtask,
cancel_subtask, rollback); workflow cancellation aborts the task and releases the cluster lock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from contracts import errors
from contracts.engine import MEMO_CLUSTER_ID, MEMO_CREATOR, MEMO_TASK_ID, SUBTASK_IDS_PER_TASK, TAKEOVER_WORKFLOW
from contracts.fleet import MemberStatus
from contracts.messages import DiscoverTopologyInput, EngineSettings
from contracts.request import TakeOverRequest
from contracts.stages import ALLOCATE_TASK_ID, DISCOVER_TOPOLOGY, LOAD_ENGINE_SETTINGS
from contracts.target import ClusterTarget, TakeoverOptions
from contracts.task_view import RecordedStatus, TaskView
from contracts.topology import ClusterEndpoint, Topology
from workflows.engine import (
    CLUSTER_ADDRESS_KEY,
    CLUSTER_NAME_KEY,
    SEARCH_ATTRIBUTES,
    TASK_STATUS_KEY,
    SubtaskWorkflow,
    failure_message,
)
from workflows.inputs import parse_request_or_fail
from workflows.task import Task, format_time

__all__ = ["SEARCH_ATTRIBUTES", "TASK_STATUS_KEY", "TakeOverCluster"]

DISCOVERY_TIMEOUT_SECONDS = 60
DISCOVERY_ATTEMPT_SECONDS = 15
# Task ids from the metadb instead of random numbers.
METADB_IDS_PATCH = "metadb-task-ids"


@workflow.defn(name=TAKEOVER_WORKFLOW)
class TakeOverCluster(SubtaskWorkflow):
    @workflow.run
    async def run(self, body: Any) -> TaskView:
        # `Any`, not a typed model: a body of the wrong shape must reach parse_request and fail the
        # workflow with InvalidRequest, instead of failing its decoding and being retried for ever.
        try:
            return await self._take_over(body)
        except ApplicationError as exc:
            if self._task is None:  # ended before its task existed: a fleet learns why
                self._tell_fleet(MemberStatus.NOT_STARTED, message=exc.message)
                await self._updates_delivered()
            raise

    async def _take_over(self, body: Any) -> TaskView:
        request = parse_request_or_fail(body)
        self._options = TakeoverOptions.of_request(request)
        workflow.upsert_search_attributes(
            [
                CLUSTER_ADDRESS_KEY.value_set(request.endpoint),
                TASK_STATUS_KEY.value_set(RecordedStatus.CREATING),
            ]
        )
        self._settings = await workflow.execute_local_activity(
            LOAD_ENGINE_SETTINGS,
            result_type=EngineSettings,
            start_to_close_timeout=timedelta(seconds=10),
        )
        topology = await self._discover_topology(request)
        info = workflow.info()
        task_id, first_subtask_id, cluster_id = await self._ids()
        self._task = Task(
            task_id=task_id,
            first_subtask_id=first_subtask_id,
            topology=topology,
            creator=str(workflow.memo_value(MEMO_CREATOR, "temporal")),
            executor=self._settings.executor,
            start_time=format_time(workflow.now()),
            cluster_id=cluster_id,
        )
        self._target = ClusterTarget.of_request(request, cluster_id).discovered(topology)
        workflow.upsert_search_attributes([CLUSTER_NAME_KEY.value_set(topology.cluster_name)])
        workflow.logger.info(
            "task %s: taking over cluster %s at %s (%d servers) in %s",
            self._task.id,
            topology.cluster_name,
            request.endpoint,
            len(topology.servers),
            info.workflow_id,
        )
        return await self._run_task()

    async def _ids(self) -> tuple[int, int, int | None]:
        """The task id, the first subtask id and the allocated cluster id (None: allocated later).

        The REST API allocates the task and cluster ids in the metadb and passes them in the memo; a
        workflow started otherwise has its task id allocated there by a local activity. Takeovers
        started before ids came from the metadb keep their random ids when they replay.
        """
        if not workflow.patched(METADB_IDS_PATCH):
            rng = workflow.random()
            return rng.randint(10_000_000, 99_999_999), rng.randint(10_000_000, 99_999_999) * 100, None
        task_id = workflow.memo_value(MEMO_TASK_ID, None, type_hint=int)
        if task_id is None:
            task_id = await workflow.execute_local_activity(
                ALLOCATE_TASK_ID, result_type=int, start_to_close_timeout=timedelta(seconds=30)
            )
        cluster_id = workflow.memo_value(MEMO_CLUSTER_ID, None, type_hint=int)
        return task_id, task_id * SUBTASK_IDS_PER_TASK, cluster_id

    async def _discover_topology(self, request: TakeOverRequest) -> Topology:
        endpoint = ClusterEndpoint.from_request(request)
        try:
            topology: Topology = await workflow.execute_activity(
                DISCOVER_TOPOLOGY,
                DiscoverTopologyInput(endpoint=endpoint),
                result_type=Topology,
                schedule_to_close_timeout=self._scaled(DISCOVERY_TIMEOUT_SECONDS),
                # An attempt lost with its worker is retried after this, within the overall timeout.
                start_to_close_timeout=self._scaled(DISCOVERY_ATTEMPT_SECONDS),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=self._settings.retry_initial_interval),
                    maximum_attempts=3,
                ),
                summary=f"Discover topology · {request.endpoint}",
            )
            return topology
        except ActivityError as exc:
            cause = exc.cause
            kind = cause.type if isinstance(cause, ApplicationError) else errors.CLUSTER_UNREACHABLE
            raise ApplicationError(
                f"cannot take over {request.endpoint}: {failure_message(exc, self._scaled(DISCOVERY_TIMEOUT_SECONDS))}",
                type=kind or errors.TOPOLOGY_UNAVAILABLE,
                non_retryable=True,
            ) from None
