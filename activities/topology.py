"""Learning a cluster's topology before the first subtask: the statements, their parsers, the activity."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities.failures import to_application_error
from activities.ob_sys_client import ObSysClient
from contracts.errors import ClusterSqlError, NotOceanBase, TakeoverError, UnsupportedVersion
from contracts.messages import DiscoverTopologyInput
from contracts.topology import ClusterEndpoint, ServerNode, Topology, ZoneNode

VERSION_SQL = "SELECT version() AS VERSION"
PARAMETERS_SQL = "SELECT NAME, VALUE FROM oceanbase.GV$OB_PARAMETERS WHERE NAME IN ('cluster', 'cluster_id')"
SERVERS_SQL = "SELECT SVR_IP, SVR_PORT, SQL_PORT, ZONE FROM oceanbase.DBA_OB_SERVERS ORDER BY ZONE, SVR_IP, SVR_PORT"
ZONES_SQL = "SELECT ZONE, REGION, IDC FROM oceanbase.DBA_OB_ZONES ORDER BY ZONE"
TENANT_ROLES_SQL = "SELECT TENANT_ROLE FROM oceanbase.DBA_OB_TENANTS WHERE TENANT_TYPE = 'USER'"

# MySQL error for a missing table: a MySQL server that is not OceanBase lacks the oceanbase views.
_NO_SUCH_TABLE = 1146
_OB_VERSION = re.compile(r"OceanBase(?:_CE)?-v?(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?", re.IGNORECASE)


def parse_version(version_text: str) -> str:
    """The OceanBase version in `SELECT version()`'s answer, e.g. `5.7.25-OceanBase_CE-v4.2.1.8`.

    Raises NotOceanBase for another MySQL server and UnsupportedVersion before 4.0.
    """
    match = _OB_VERSION.search(version_text)
    if not match:
        raise NotOceanBase(
            f"the server reports version '{version_text}', which is not OceanBase; "
            "check that address and port point at an OceanBase cluster"
        )
    version = ".".join(part for part in match.groups() if part is not None)
    if int(match.group(1)) < 4:
        raise UnsupportedVersion(f"OceanBase {version} found; only OceanBase 4.x clusters can be taken over")
    return version


def parse_topology(
    version_text: str,
    parameters: list[dict[str, Any]],
    servers: list[dict[str, Any]],
    zones: list[dict[str, Any]],
    tenant_roles: list[dict[str, Any]],
) -> Topology:
    """Build the topology from the discovery statements' rows."""
    version = parse_version(version_text)
    values = {str(row["NAME"]).lower(): str(row["VALUE"]) for row in parameters}
    if "cluster" not in values or "cluster_id" not in values:
        raise ClusterSqlError("parameters 'cluster' and 'cluster_id' are missing from GV$OB_PARAMETERS")
    if not servers:
        raise ClusterSqlError("DBA_OB_SERVERS lists no server")
    roles = {str(row["TENANT_ROLE"]).upper() for row in tenant_roles}
    return Topology(
        cluster_name=values["cluster"],
        ob_cluster_id=int(values["cluster_id"]),
        version=version,
        standby=roles == {"STANDBY"},
        servers=[
            ServerNode(
                ip=str(row["SVR_IP"]),
                rpc_port=int(row["SVR_PORT"]),
                sql_port=int(row["SQL_PORT"]),
                zone=str(row["ZONE"]),
            )
            for row in servers
        ],
        zones=[
            ZoneNode(name=str(row["ZONE"]), region=str(row["REGION"] or ""), idc=str(row["IDC"] or "")) for row in zones
        ],
    )


def read_topology(client: ObSysClient) -> Topology:
    try:
        version_text = str(client.query(VERSION_SQL)[0]["VERSION"])
        parse_version(version_text)
        return parse_topology(
            version_text,
            client.query(PARAMETERS_SQL),
            client.query(SERVERS_SQL),
            client.query(ZONES_SQL),
            client.query(TENANT_ROLES_SQL),
        )
    except ClusterSqlError as exc:
        if exc.code == _NO_SUCH_TABLE:
            raise NotOceanBase(
                "the server lacks OceanBase's system views; check that address and port point at "
                "an OceanBase cluster's sys tenant",
                node=client.where,
            ) from None
        raise


def discover_topology_activity(resolve: Callable[[ClusterEndpoint], ClusterEndpoint]) -> Callable[..., Any]:
    """The `discover_topology` activity; `resolve` fills in a password kept in the password box."""

    @activity.defn(name="discover_topology")
    async def discover_topology(arg: DiscoverTopologyInput) -> Topology:
        """Read the cluster's name, id, version, servers and zones as root@sys."""

        def work() -> Topology:
            with ObSysClient(resolve(arg.endpoint)) as client:
                return read_topology(client)

        try:
            return await asyncio.to_thread(work)
        except TakeoverError as exc:
            raise to_application_error(exc) from None

    return discover_topology
