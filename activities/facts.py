"""Facts: what the takeover reads from a cluster and its hosts, as typed values.

Each fact is a statement or a command plus a pure parser (in `cluster_sql`, `host_commands`). The
topology discovery, the precheck and the subtasks read through these functions, so that the same
question is asked the same way everywhere and the precheck's verdicts are pure functions of facts.
Nothing here writes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from activities import cluster_sql as sql
from activities import host_commands as commands
from activities.ports import ClusterPort, HostPort
from contracts.errors import (
    ClusterSqlError,
    FailedPrecondition,
    NotOceanBase,
    ObserverNotRunning,
    UnsupportedVersion,
)
from contracts.topology import ServerNode, Topology, ZoneNode

# --- the cluster -------------------------------------------------------------------------------------

VERSION_SQL = "SELECT version() AS VERSION"
IDENTITY_SQL = "SELECT NAME, VALUE FROM oceanbase.GV$OB_PARAMETERS WHERE NAME IN ('cluster', 'cluster_id')"
TENANT_ROLES_SQL = "SELECT TENANT_ROLE FROM oceanbase.DBA_OB_TENANTS WHERE TENANT_TYPE = 'USER'"
TOPOLOGY_SERVERS_SQL = (
    "SELECT SVR_IP, SVR_PORT, SQL_PORT, ZONE FROM oceanbase.DBA_OB_SERVERS ORDER BY ZONE, SVR_IP, SVR_PORT"
)
TOPOLOGY_ZONES_SQL = "SELECT ZONE, REGION, IDC FROM oceanbase.DBA_OB_ZONES ORDER BY ZONE"

# MySQL error for a missing table: a MySQL server that is not OceanBase lacks the oceanbase views.
_NO_SUCH_TABLE = 1146
_OB_VERSION = re.compile(r"OceanBase(?:_CE)?-v?(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?", re.IGNORECASE)


@dataclass(frozen=True)
class ClusterFacts:
    """The topology, each server's row of DBA_OB_SERVERS (status, service times) and the config URL."""

    topology: Topology
    servers: list[dict[str, Any]]
    config_url: str


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
    identity: list[dict[str, Any]],
    servers: list[dict[str, Any]],
    zones: list[dict[str, Any]],
    tenant_roles: list[dict[str, Any]],
) -> Topology:
    """The topology from the discovery statements' rows."""
    version = parse_version(version_text)
    values = {str(row["NAME"]).lower(): str(row["VALUE"]) for row in identity}
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


def read_parameter(port: ClusterPort, name: str) -> str:
    """A cluster parameter's value ('' when the cluster does not report it)."""
    rows = port.query(sql.parameter(name))
    return str(rows[0]["VALUE"]) if rows else ""


def read_topology(port: ClusterPort) -> Topology:
    """Name, id, version, servers and zones, as root@sys; the version is checked first, so a server that is
    not OceanBase 4.x is named as such instead of failing on a missing view."""
    try:
        version_text = str(port.query(VERSION_SQL)[0]["VERSION"])
        parse_version(version_text)
        return parse_topology(
            version_text,
            port.query(IDENTITY_SQL),
            port.query(TOPOLOGY_SERVERS_SQL),
            port.query(TOPOLOGY_ZONES_SQL),
            port.query(TENANT_ROLES_SQL),
        )
    except ClusterSqlError as exc:
        if exc.code == _NO_SUCH_TABLE:
            raise NotOceanBase(
                "the server lacks OceanBase's system views; check that address and port point at "
                "an OceanBase cluster's sys tenant",
                node=port.where,
            ) from None
        raise


def read_cluster_facts(port: ClusterPort) -> ClusterFacts:
    """The topology, then the config URL and every server's state."""
    topology = read_topology(port)
    config_url = read_parameter(port, "obconfig_url")
    return ClusterFacts(topology=topology, servers=port.query(sql.SERVERS_SQL), config_url=config_url)


def server_serving(row: dict[str, Any]) -> bool:
    """Whether a DBA_OB_SERVERS row is ACTIVE with its service started and not stopped."""
    return row["STATUS"] == "ACTIVE" and row["STOP_TIME"] is None and row["START_SERVICE_TIME"] is not None


# --- the hosts ---------------------------------------------------------------------------------------

# A host whose clock differs from the worker's by more than this is reported (OCP checks 1 s).
CLOCK_OFFSET_LIMIT_S = 1.0


@dataclass(frozen=True)
class MeasuredHost:
    """A host's facts and its clock's offset from the worker's (the midpoint of the command's round trip)."""

    facts: commands.HostFacts
    clock_offset: float

    @property
    def clock_in_sync(self) -> bool:
        return abs(self.clock_offset) <= CLOCK_OFFSET_LIMIT_S

    def as_dict(self) -> dict[str, Any]:
        return self.facts.as_dict(self.clock_offset)


async def read_host_facts(port: HostPort) -> MeasuredHost:
    """Hostname, OS, kernel, architecture, CPUs, memory, free disk and clock offset of a host."""
    before = time.time()
    output = (await port.run(commands.HOST_FACTS, what="the facts script")).stdout
    after = time.time()
    try:
        facts = commands.parse_host_facts(output)
    except ValueError as exc:
        raise FailedPrecondition(
            f"{exc}; check the commands of the facts script on the host", node=port.address
        ) from None
    return MeasuredHost(facts=facts, clock_offset=facts.epoch - (before + after) / 2)


@dataclass(frozen=True)
class ObserverProcess:
    """The observer process that serves a server's SQL port."""

    name: str
    pid: int
    details: dict[str, Any]

    @property
    def os_user(self) -> str:
        return str(self.details["os_user"])

    @property
    def install_path(self) -> str:
        return str(self.details["install_path"])


async def find_observer(port: HostPort, server: ServerNode) -> tuple[tuple[str, int] | None, str]:
    """(process name, pid) of what listens on the server's SQL port, or None; and the listeners seen."""
    listeners = (await port.run(commands.listening_process(server.sql_port))).stdout
    return commands.parse_listener(listeners, server.ip, server.sql_port), listeners.strip()


async def read_observer_process(port: HostPort, server: ServerNode, *, with_disk: bool = False) -> ObserverProcess:
    """The observer of `server`: pid, OS user, start time, command line, install, data and log directories
    (and, `with_disk`, their free space). ObserverNotRunning when nothing listens on its SQL port,
    FailedPrecondition when the host's tools answer in an unknown shape."""
    found, listeners = await find_observer(port, server)
    if found is None:
        raise ObserverNotRunning(
            f"no observer process listens on SQL port {server.sql_port} of host {server.ip} "
            f"(listeners: {listeners or 'none'}); start the observer and retry (OCP 11053)",
            node=server.label,
        )
    name, pid = found
    output = (await port.run(commands.process_details(pid), what=f"reading process {pid}")).stdout
    try:
        details = commands.parse_process_details(output, pid, name)
        if with_disk:
            dirs = (details["data_dir"], details["log_dir"])
            free = (await port.run(commands.disk_free(*dirs), what="measuring free space")).stdout
            details["data_disk_free_kb"], details["log_disk_free_kb"] = commands.parse_disk_free(free, 2)
    except ValueError as exc:
        raise FailedPrecondition(f"{exc}; check `ps`, `df` and /proc on host {server.ip}", node=server.label) from None
    return ObserverProcess(name=name, pid=pid, details=details)
