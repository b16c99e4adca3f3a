"""Typed inputs and results of the takeover's activities.

The workflow and the activities share these models; they hold no logic that touches the network, so
the workflow sandbox may import them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from workflows.request import TakeOverRequest


class Model(BaseModel):
    """Base of every payload: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )


class ServerNode(Model):
    """One observer as the cluster reports it."""

    ip: str
    rpc_port: int
    sql_port: int
    zone: str

    @property
    def label(self) -> str:
        return f"{self.ip}:{self.rpc_port}"


class ZoneNode(Model):
    name: str
    region: str = ""
    idc: str = ""


class HostNode(Model):
    """A machine carrying observers, identified by its IP."""

    ip: str


class Topology(Model):
    """What a takeover learns about the cluster before its first subtask, as OCP does at task creation."""

    cluster_name: str
    ob_cluster_id: int
    version: str
    standby: bool = False
    servers: list[ServerNode]
    zones: list[ZoneNode]

    @property
    def hosts(self) -> list[HostNode]:
        """Distinct server IPs in the order the servers are listed."""
        seen: dict[str, HostNode] = {}
        for server in self.servers:
            seen.setdefault(server.ip, HostNode(ip=server.ip))
        return list(seen.values())


class ClusterEndpoint(Model):
    """How to reach the cluster's sys tenant, with the credentials of the request."""

    address: str
    port: int
    connection_mode: str = "direct"
    cluster_name: str | None = None
    ob_cluster_id: int | None = None
    root_sys_password: str | None = Field(default=None, repr=False)
    # Instead of the password: a cluster credential in the password box, resolved by the activity.
    credential_id: int | None = None

    @classmethod
    def from_request(cls, request: TakeOverRequest) -> ClusterEndpoint:
        return cls(
            address=request.address,
            port=request.port,
            connection_mode=request.connection_mode.value,
            cluster_name=request.cluster_name,
            ob_cluster_id=request.ob_cluster_id,
            root_sys_password=request.root_sys_password,
            credential_id=request.root_sys_credential_id,
        )


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


class SubtaskInput(Model):
    """What every subtask activity receives.

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
    request: TakeOverRequest
    cluster_name: str
    ob_cluster_id: int
    topology: Topology | None = None
    node_kind: str = "CLUSTER"
    server: ServerNode | None = None
    host: HostNode | None = None
    zone: ZoneNode | None = None
    context: dict[str, str] = Field(default_factory=dict)


class SubtaskResult(Model):
    """What a subtask activity reports: lines for the subtask log and values for its downstreams."""

    log: list[str] = Field(default_factory=list)
    context: dict[str, str] = Field(default_factory=dict)
