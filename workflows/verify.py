"""`VerifyManagedCluster`: is a managed cluster still as its takeover left it? With `repair`, put right what
the report names, as a task on the shared engine.

The verification itself is one read-only activity (`verify_managed_cluster`): the cluster through the facts
layer, its hosts over SSH, compared with the metadb. A repair runs the takeover's own idempotent subtasks
that the findings name (`contracts.stages.repair_stages`), between the cluster lock and its release, acting
for the takeover's task (so a later release still restores what was there before the takeover), over the
drifted hosts and the servers that joined only (those are adopted: checked, their hosts reserved, recorded,
their agents configured); then the cluster is verified again. A repair's rollback only releases the lock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from contracts import errors
from contracts.engine import MEMO_CREATOR, MEMO_TASK_ID, REPORT_QUERY, SUBTASK_IDS_PER_TASK, VERIFY_WORKFLOW
from contracts.messages import EngineSettings
from contracts.release import ReleaseTarget
from contracts.stages import (
    ADOPT_SERVER,
    ALLOCATE_TASK_ID,
    DESCRIBE_VERIFY_TARGET,
    LOAD_ENGINE_SETTINGS,
    REPAIR_TASK_NAME,
    VERIFY_MANAGED_CLUSTER,
    FanOut,
    repair_fan_out,
    repair_stages,
)
from contracts.topology import ServerNode, Topology
from contracts.verification import (
    VerificationReport,
    VerificationResult,
    VerifyInput,
    VerifyRequest,
    parse_verify_request,
)
from workflows.engine import CLUSTER_ADDRESS_KEY, CLUSTER_NAME_KEY, SubtaskWorkflow, failure_message
from workflows.inputs import parse_or_fail
from workflows.task import Task, format_time

DESCRIBE_TIMEOUT_SECONDS = 60
VERIFY_TIMEOUT_SECONDS = 120
# A repair adopts the servers that joined (their findings name ADOPT_SERVER and carry the server).
ADOPTION_PATCH = "adopt-new-servers"


@workflow.defn(name=VERIFY_WORKFLOW)
class VerifyManagedCluster(SubtaskWorkflow):
    def __init__(self) -> None:
        super().__init__()
        self._report: VerificationReport | None = None

    @workflow.run
    async def run(self, body: Any) -> VerificationResult:
        request = parse_or_fail(parse_verify_request, body)
        self._settings = await workflow.execute_local_activity(
            LOAD_ENGINE_SETTINGS, result_type=EngineSettings, start_to_close_timeout=timedelta(seconds=10)
        )
        managed = await self._describe(request)
        workflow.upsert_search_attributes(
            [
                CLUSTER_ADDRESS_KEY.value_set(managed.target.where),
                CLUSTER_NAME_KEY.value_set(managed.topology.cluster_name),
            ]
        )
        report = await self._verify(managed)
        self._report = report
        workflow.set_current_details(_summary(report))
        repairable = report.repairable()
        if not request.repair or not repairable:
            return VerificationResult(report=report)
        self._target = managed.target
        task_id = workflow.memo_value(MEMO_TASK_ID, None, type_hint=int)
        if task_id is None:
            task_id = await workflow.execute_local_activity(
                ALLOCATE_TASK_ID, result_type=int, start_to_close_timeout=timedelta(seconds=30)
            )
        # Servers that joined are adopted (reports from before adoption never name a repair for them).
        adopted = [f.server for f in repairable if f.repair == ADOPT_SERVER and f.server is not None]
        if adopted and not workflow.patched(ADOPTION_PATCH):
            adopted = []
            repairable = [f for f in repairable if f.repair != ADOPT_SERVER]
        names = {finding.repair for finding in repairable if finding.repair}
        drifted_hosts = {
            finding.node for finding in repairable if finding.repair and repair_fan_out(finding.repair) is FanOut.HOST
        }
        self._task = Task(
            task_id=task_id,
            first_subtask_id=task_id * SUBTASK_IDS_PER_TASK,
            topology=_restricted(managed.topology, drifted_hosts, adopted),
            creator=str(workflow.memo_value(MEMO_CREATOR, "temporal")),
            executor=self._settings.executor,
            start_time=format_time(workflow.now()),
            cluster_id=managed.cluster_id,
            stages=repair_stages(names),
            name=REPAIR_TASK_NAME,
        )
        workflow.logger.info(
            "task %s: repairing cluster %s (cluster %d, taken over by task %d): %s",
            task_id,
            managed.topology.cluster_name,
            managed.cluster_id,
            managed.owner_task_id,
            ", ".join(sorted(names)),
        )
        repaired = await self._run_task()
        if adopted:
            # The adopted servers are recorded now: they are verified as the others are.
            managed = await self._describe(request)
        after = await self._verify(managed)
        workflow.set_current_details(_summary(after))
        return VerificationResult(report=report, repair_task=repaired, after_repair=after)

    @workflow.query(name=REPORT_QUERY)
    def report(self) -> VerificationReport:
        if self._report is None:
            raise ApplicationError("the verification is still reading the cluster", type=errors.TASK_NOT_READY)
        return self._report

    def _input_extras(self, task: Task) -> dict[str, Any]:
        return {"task_name": REPAIR_TASK_NAME}

    async def _describe(self, request: VerifyRequest) -> ReleaseTarget:
        try:
            target: ReleaseTarget = await workflow.execute_activity(
                DESCRIBE_VERIFY_TARGET,
                request,
                result_type=ReleaseTarget,
                start_to_close_timeout=self._scaled(DESCRIBE_TIMEOUT_SECONDS),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
                summary=f"Describe managed cluster {request.cluster_id}",
            )
            return target
        except ActivityError as exc:
            timeout = self._scaled(DESCRIBE_TIMEOUT_SECONDS)
            raise _failed(f"cannot verify cluster {request.cluster_id}", exc, timeout) from None

    async def _verify(self, managed: ReleaseTarget) -> VerificationReport:
        try:
            report: VerificationReport = await workflow.execute_activity(
                VERIFY_MANAGED_CLUSTER,
                VerifyInput(managed=managed),
                result_type=VerificationReport,
                start_to_close_timeout=self._scaled(VERIFY_TIMEOUT_SECONDS),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
                summary=f"Verify · {managed.topology.cluster_name}",
            )
            return report
        except ActivityError as exc:
            timeout = self._scaled(VERIFY_TIMEOUT_SECONDS)
            raise _failed(f"cannot verify cluster {managed.cluster_id}", exc, timeout) from None


def _failed(what: str, exc: ActivityError, timeout: timedelta) -> ApplicationError:
    cause = exc.cause
    kind = cause.type if isinstance(cause, ApplicationError) else None
    return ApplicationError(
        f"{what}: {failure_message(exc, timeout)}", type=kind or errors.TOPOLOGY_UNAVAILABLE, non_retryable=True
    )


def _restricted(topology: Topology, host_ips: set[str | None], adopted: list[ServerNode]) -> Topology:
    """The topology with only the servers of the drifted hosts and the servers to adopt: host and server
    subtasks run there and nowhere else."""
    kept = [s for s in topology.servers if s.ip in host_ips]
    return topology.model_copy(update={"servers": [*kept, *(s for s in adopted if s not in kept)]})


def _summary(report: VerificationReport) -> str:
    """The Temporal UI's current details: the findings as a small table."""
    if report.clean:
        return f"{report.cluster_name}: no drift ({report.checked_at}, {report.seconds:.2f}s)"
    lines = [f"{report.cluster_name}: {len(report.findings)} drift(s) ({report.checked_at})", ""]
    lines += ["| kind | node | repair |", "|---|---|---|"]
    lines += [f"| {f.kind.value} | {f.node or '-'} | {f.repair or '-'} |" for f in report.findings]
    return "\n".join(lines)
