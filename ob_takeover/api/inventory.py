"""OCP's inventory structures (ObCluster, Zone, OBServer, Host), built from what the metadb records, with the
field names and types of OCP's API reference ("Query clusters", "Query zones of an OceanBase cluster",
"Query OBServer nodes", "Query hosts"). Fields OCP has and this service does not know are left out; the
few of ours that OCP has no equivalent for are named in each model's description."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from metadb.inventory import ClusterInventory

# Our cluster statuses as OCP's (a release is OCP's moveOut).
CLUSTER_STATUS = {"TAKINGOVER": "TAKINGOVER", "RUNNING": "RUNNING", "RELEASING": "MOVINGOUT"}
STATUS_FILTER = {ocp: ours for ours, ocp in CLUSTER_STATUS.items()}


class _Ocp(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True)


class RootServer(BaseModel):
    """A root service replica as OCP lists it: `sql_port` is snake_case in OCP's JSON, too."""

    address: str = Field(description="IP:RPC port")
    role: str = Field(description="LEADER or FOLLOWER")
    sql_port: int


class ObServer(_Ocp):
    id: int = Field(description="the server's id here, derived from its cluster and address")
    ip: str
    port: int = Field(description="RPC port")
    sql_port: int
    version: str
    with_rootserver: bool = Field(alias="withRootserver")
    status: str = Field(description="RUNNING, or UNAVAILABLE when the server is not ACTIVE")
    inner_status: str = Field(description="the server's STATUS in DBA_OB_SERVERS (ACTIVE, INACTIVE)")
    cluster_id: int
    zone_name: str
    region_name: str
    idc_name: str
    host_id: int | None = None
    host_type_name: str | None = None
    install_path: str | None = None
    run_user: str | None = None
    start_time: str | None = None


class Zone(_Ocp):
    name: str
    idc_name: str
    region_name: str
    status: str = Field(description="RUNNING, or UNAVAILABLE when the zone is not ACTIVE")
    inner_status: str = Field(description="the zone's STATUS in DBA_OB_ZONES")
    cluster_id: int
    ob_cluster_id: int
    server_count: int
    host_count: int
    root_server: RootServer | None = None
    servers: list[ObServer]


class ObCluster(_Ocp):
    """OCP's ObCluster. Ours, with no OCP equivalent: `address`, `port` and `connectionMode`, the endpoint
    the cluster is managed through (direct, or through OBProxy)."""

    id: int
    name: str
    ob_cluster_id: int
    type: str = Field(description="PRIMARY or STANDBY")
    ob_version: str
    min_ob_build_version: str | None = None
    status: str = Field(description="TAKINGOVER, RUNNING or MOVINGOUT (being released)")
    origin: str = "TAKEN_OVER"
    architecture: str | None = None
    region_count: int
    zone_count: int = Field(description="number of zones")
    server_count: int
    tenant_count: int
    root_servers: list[RootServer]
    config_url: str | None = None
    zones: list[Zone]
    standby_clusters: list[dict[str, Any]] = Field(
        default_factory=list, description="not known here: a takeover records no primary/standby relation"
    )
    primary_cluster: dict[str, Any] | None = None
    creator: str | None = None
    create_time: str
    update_time: str
    address: str
    port: int
    connection_mode: str


class HostService(BaseModel):
    name: str = Field(description="`<clusterName>:<obClusterId>` for an OceanBase cluster")
    type: str
    version: str | None = None
    softwarePackageId: int | None = None


class Host(_Ocp):
    """OCP's Host: never a credential."""

    id: int
    name: str
    inner_ip_address: str
    ssh_port: int
    kind: str
    publish_ports: str | None = None
    status: str = Field(description="ONLINE while a managed cluster holds it, AVAILABLE otherwise")
    type_id: int
    type_name: str | None = None
    type_description: str | None = None
    architecture: str | None = None
    operating_system: str | None = None
    services: list[HostService]
    create_time: str
    update_time: str


def _root_servers(record: dict[str, Any]) -> list[RootServer]:
    return [
        RootServer(address=str(r["address"]), role=str(r.get("role") or "FOLLOWER"), sql_port=int(r["sql_port"]))
        for r in record.get("rs_list") or []
    ]


def ob_cluster(inventory: ClusterInventory) -> ObCluster:
    record = inventory.record
    attributes = record.get("attributes") or {}
    roles = {str(t["tenant_role"]).upper() for t in inventory.tenants if t["tenant_type"] == "USER"}
    roots = _root_servers(record)
    zones = [_zone(inventory, zone, roots) for zone in inventory.zones]
    builds = sorted(str(s["build_version"]) for s in inventory.servers if s["build_version"])
    return ObCluster(
        id=int(record["id"]),
        name=str(record["name"]),
        ob_cluster_id=int(record["ob_cluster_id"]),
        type="STANDBY" if roles == {"STANDBY"} else "PRIMARY",
        ob_version=str(attributes.get("version") or record["version"]),
        min_ob_build_version=builds[0] if builds else None,
        status=CLUSTER_STATUS.get(str(record["status"]), str(record["status"])),
        architecture=_architecture(inventory),
        region_count=len({z["region"] for z in inventory.zones}),
        zone_count=len(inventory.zones),
        server_count=len(inventory.servers),
        tenant_count=len(inventory.tenants),
        root_servers=roots,
        config_url=record.get("config_url") or None,
        zones=zones,
        creator=inventory.creator,
        create_time=str(record["created_at"]),
        update_time=str(record["updated_at"]),
        address=str(record["address"]),
        port=int(record["port"]),
        connection_mode=str(record["connection_mode"]),
    )


def _architecture(inventory: ClusterInventory) -> str | None:
    arches = {str(h["facts"].get("arch")) for h in inventory.hosts.values() if h["facts"].get("arch")}
    return arches.pop() if len(arches) == 1 else None


def _zone(inventory: ClusterInventory, zone: dict[str, Any], roots: list[RootServer]) -> Zone:
    servers = [ob_server(inventory, s) for s in inventory.servers if s["zone"] == zone["name"]]
    addresses = {f"{s.ip}:{s.port}" for s in servers}
    return Zone(
        name=str(zone["name"]),
        idc_name=str(zone["idc"]),
        region_name=str(zone["region"]),
        status="RUNNING" if zone["status"] == "ACTIVE" else "UNAVAILABLE",
        inner_status=str(zone["status"]),
        cluster_id=int(inventory.record["id"]),
        ob_cluster_id=int(inventory.record["ob_cluster_id"]),
        server_count=len(servers),
        host_count=len({s.ip for s in servers}),
        root_server=next((r for r in roots if r.address in addresses), None),
        servers=servers,
    )


def ob_server(inventory: ClusterInventory, server: dict[str, Any]) -> ObServer:
    zone = next((z for z in inventory.zones if z["name"] == server["zone"]), {"region": "", "idc": ""})
    host = inventory.hosts.get(str(server["ip"]))
    process = json.loads(server["process_info"]) if server.get("process_info") else {}
    return ObServer(
        id=server_id(int(inventory.record["id"]), str(server["ip"]), int(server["rpc_port"])),
        ip=str(server["ip"]),
        port=int(server["rpc_port"]),
        sql_port=int(server["sql_port"]),
        version=str(server["build_version"] or inventory.record["version"]),
        with_rootserver=str(server["with_rootserver"]).upper() in ("YES", "TRUE", "1"),
        status="RUNNING" if server["status"] == "ACTIVE" else "UNAVAILABLE",
        inner_status=str(server["status"]),
        cluster_id=int(inventory.record["id"]),
        zone_name=str(server["zone"]),
        region_name=str(zone["region"]),
        idc_name=str(zone["idc"]),
        host_id=int(host["id"]) if host else None,
        host_type_name=host["type_name"] if host else None,
        install_path=process.get("install_path"),
        run_user=process.get("os_user"),
        start_time=process.get("start_time"),
    )


def server_id(cluster_id: int, ip: str, rpc_port: int) -> int:
    """A server's id: stable for as long as the cluster is managed (the metadb keys servers by address)."""
    return int(hashlib.sha256(f"{cluster_id}:{ip}:{rpc_port}".encode()).hexdigest()[:12], 16)


def host(row: dict[str, Any]) -> Host:
    facts = row.get("facts") or {}
    services = []
    if row.get("cluster_name"):
        services.append(
            HostService(
                name=f"{row['cluster_name']}:{row['ob_cluster_id']}", type="OB_CLUSTER", version=row["cluster_version"]
            )
        )
    return Host(
        id=int(row["id"]),
        name=str(facts.get("hostname") or row["ip"]),
        inner_ip_address=str(row["ip"]),
        ssh_port=int(row["ssh_port"]),
        kind=str(row["kind"]),
        publish_ports=row.get("publish_ports"),
        status="ONLINE" if row.get("reserved_by_cluster_id") is not None else "AVAILABLE",
        type_id=int(row["host_type_id"]),
        type_name=row.get("type_name"),
        type_description=row.get("type_description") or None,
        architecture=facts.get("arch"),
        operating_system=facts.get("os"),
        services=services,
        create_time=str(row["created_at"]),
        update_time=str(row["updated_at"]),
    )
