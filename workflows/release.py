"""`ReleaseCluster`: a managed cluster leaves management, as OCP's "move out", on the shared engine.

The release reads what the metadb recorded of the cluster (its endpoint, the takeover task, the servers,
zones and hosts the takeover worked on), then walks its own subtask table (`RELEASE_SUBTASKS`): the
takeover's compensations in reverse order, acting for the takeover's task, so that only what that takeover
created is removed and what it changed is put back. No data is touched; the proxyro password stays.
One release per cluster: its workflow id is `release-<address>-<port>` and it holds the cluster lock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from contracts import errors
from contracts.engine import MEMO_CREATOR, MEMO_TASK_ID, RELEASE_WORKFLOW, SUBTASK_IDS_PER_TASK
from contracts.messages import EngineSettings
from contracts.release import ReleaseRequest, ReleaseTarget, parse_release_request
from contracts.stages import (
    ALLOCATE_TASK_ID,
    DESCRIBE_MANAGED_CLUSTER,
    LOAD_ENGINE_SETTINGS,
    RELEASE_SUBTASKS,
    RELEASE_TASK_NAME,
)
from contracts.task_view import RecordedStatus, TaskView
from workflows.engine import CLUSTER_ADDRESS_KEY, CLUSTER_NAME_KEY, TASK_STATUS_KEY, SubtaskWorkflow, failure_message
from workflows.inputs import parse_or_fail
from workflows.task import Task, format_time

DESCRIBE_TIMEOUT_SECONDS = 60


@workflow.defn(name=RELEASE_WORKFLOW)
class ReleaseCluster(SubtaskWorkflow):
    def __init__(self) -> None:
        super().__init__()
        self._release: ReleaseRequest | None = None

    @workflow.run
    async def run(self, body: Any) -> TaskView:
        release = parse_or_fail(parse_release_request, body)
        self._release = release
        workflow.upsert_search_attributes([TASK_STATUS_KEY.value_set(RecordedStatus.CREATING)])
        self._settings = await workflow.execute_local_activity(
            LOAD_ENGINE_SETTINGS, result_type=EngineSettings, start_to_close_timeout=timedelta(seconds=10)
        )
        target = await self._describe(release)
        self._target = target.target
        workflow.upsert_search_attributes(
            [
                CLUSTER_ADDRESS_KEY.value_set(target.target.where),
                CLUSTER_NAME_KEY.value_set(target.topology.cluster_name),
            ]
        )
        task_id = workflow.memo_value(MEMO_TASK_ID, None, type_hint=int)
        if task_id is None:
            task_id = await workflow.execute_local_activity(
                ALLOCATE_TASK_ID, result_type=int, start_to_close_timeout=timedelta(seconds=30)
            )
        self._task = Task(
            task_id=task_id,
            first_subtask_id=task_id * SUBTASK_IDS_PER_TASK,
            topology=target.topology,
            creator=str(workflow.memo_value(MEMO_CREATOR, "temporal")),
            executor=self._settings.executor,
            start_time=format_time(workflow.now()),
            cluster_id=target.cluster_id,
            stages=RELEASE_SUBTASKS,
            name=RELEASE_TASK_NAME,
        )
        workflow.logger.info(
            "task %s: moving cluster %s (cluster %d, taken over by task %d) out of management",
            task_id,
            target.topology.cluster_name,
            target.cluster_id,
            target.owner_task_id,
        )
        return await self._run_task()

    def _input_extras(self, task: Task) -> dict[str, Any]:
        assert self._release is not None
        return {
            "task_name": RELEASE_TASK_NAME,
            "config_url": self._release.config_url,
        }

    async def _describe(self, release: ReleaseRequest) -> ReleaseTarget:
        try:
            target: ReleaseTarget = await workflow.execute_activity(
                DESCRIBE_MANAGED_CLUSTER,
                release,
                result_type=ReleaseTarget,
                start_to_close_timeout=self._scaled(DESCRIBE_TIMEOUT_SECONDS),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
                summary=f"Describe managed cluster {release.cluster_id}",
            )
            return target
        except ActivityError as exc:
            cause = exc.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            raise ApplicationError(
                f"cannot release cluster {release.cluster_id}: "
                f"{failure_message(exc, self._scaled(DESCRIBE_TIMEOUT_SECONDS))}",
                type=kind or errors.TOPOLOGY_UNAVAILABLE,
                non_retryable=True,
            ) from None
