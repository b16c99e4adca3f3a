"""What a takeover learns about a cluster before its first subtask, and how to reach its sys tenant."""

from __future__ import annotations

from pydantic import Field

from contracts.model import Model
from contracts.request import TakeOverRequest


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

    @property
    def where(self) -> str:
        """host:port, with an IPv6 address bracketed."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"
