"""Typed inputs and results of the activities, and the precheck report.

The workflows and the activities share these models; they hold no logic that touches the network.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from contracts.model import Model
from contracts.request import TakeOverRequest
from contracts.target import ClusterTarget, TakeoverOptions, upgrade_request_payload
from contracts.topology import ClusterEndpoint, HostNode, ServerNode, Topology, ZoneNode


class DiscoverTopologyInput(Model):
    endpoint: ClusterEndpoint


class EngineSettings(Model):
    """Worker-side settings the workflow needs deterministically, recorded once in its history."""

    # Who runs the task, shown as the task's `executor`.
    executor: str = "ob-takeover"

    # Multiplies every subtask timeout and the heartbeat timeout; tests use a small value.
    timeout_scale: float = 1.0
    # First delay between automatic attempts of a transient failure, in seconds.
    retry_initial_interval: float = 1.0
    # A fleet takeover continues as new once its history has this many events.
    fleet_history_events: int = 4000


class SubtaskInput(Model):
    """What every subtask activity receives: its ids and operation, the cluster it works on, and one node.

    `node_kind` and the matching one of `server`, `host`, `zone` say where a fanned-out subtask works.
    Only cluster-level subtasks get the whole `topology`, which keeps the history of a large cluster's
    fan-out small. `context` is the merge of the upstream subtasks' results, as in OCP's task context.
    `operation` is EXECUTE, RETRY or ROLLBACK (the compensation runs) or CANCEL (an abort's unlock).
    """

    task_id: int
    subtask_id: int
    subtask_name: str
    workflow_id: str
    operation: str
    target: ClusterTarget
    options: TakeoverOptions = TakeoverOptions()
    topology: Topology | None = None
    node_kind: str = "CLUSTER"
    server: ServerNode | None = None
    host: HostNode | None = None
    zone: ZoneNode | None = None
    context: dict[str, str] = Field(default_factory=dict)
    # A release: the task's name, and the obconfig_url to leave ("" for none; None: the one from before the
    # takeover).
    task_name: str | None = None
    config_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        return upgrade_request_payload(data, key_fields=True)

    @property
    def cluster_key(self) -> str:
        return self.target.key


class PreparedTask(Model):
    """A task ready to start: its ids (None for a precheck), its workflow id and its workflow input, with the
    passwords the preparation put in the password box referenced by id (`stored_credential_ids`)."""

    task_id: int | None = None
    cluster_id: int | None = None
    workflow_id: str
    input: dict[str, Any]
    stored_credential_ids: list[int] = Field(default_factory=list)


class SubtaskResult(Model):
    """What a subtask activity reports: lines for the subtask log and values for its downstreams."""

    log: list[str] = Field(default_factory=list)
    context: dict[str, str] = Field(default_factory=dict)


class SubtaskRef(Model):
    """The argument of the subtask operations and of the `subtask_log` query."""

    subtask_id: int


# --- the precheck ----------------------------------------------------------------------------------

# The precheck activity heartbeats a third as often; a worker lost during a precheck is noticed after this.
PRECHECK_HEARTBEAT_SECONDS = 6.0

PASSED = "PASSED"
FAILED = "FAILED"
WARNING = "WARNING"


class CheckItem(Model):
    name: str
    code: int | None = None
    status: str
    message: str
    node: str | None = None


class PlannedStep(BaseModel):
    """What one subtask of a takeover would send, from a run of its real code against recording ports."""

    # Built up while the subtask runs, so not frozen like the other payloads; camelCase on the wire all the same.
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    subtask: str
    node: str | None = None
    statements: list[str] = Field(default_factory=list)
    commands: list[str] = Field(default_factory=list)
    note: str = ""


class PrecheckReport(Model):
    cluster_name: str | None = None
    ob_cluster_id: int | None = None
    version: str | None = None
    zones: list[str] = Field(default_factory=list)
    servers: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    items: list[CheckItem] = Field(default_factory=list)
    passed: bool = False
    seconds: float = 0.0
    # What the takeover would send, subtask by subtask (secrets masked).
    plan: list[PlannedStep] = Field(default_factory=list)

    def failures(self) -> list[CheckItem]:
        return [item for item in self.items if item.status == FAILED]


class PrecheckInput(Model):
    """What the precheck checks: the target as requested (its cluster not known yet) and the options."""

    target: ClusterTarget
    options: TakeoverOptions = TakeoverOptions()
    # The takeover's own lock and cluster record do not count against it.
    workflow_id: str | None = None
    task_id: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        return upgrade_request_payload(data, key_fields=False)

    @classmethod
    def of_request(
        cls, request: TakeOverRequest, workflow_id: str | None = None, task_id: int | None = None
    ) -> PrecheckInput:
        return cls(
            target=ClusterTarget.of_request(request),
            options=TakeoverOptions.of_request(request),
            workflow_id=workflow_id,
            task_id=task_id,
        )
