"""Facts: what the takeover reads from a cluster and its hosts, as typed values.

Each fact is a statement or a command plus a pure parser (in `cluster_sql`, `host_commands`). The
topology discovery, the precheck and the subtasks read through these functions, so that the same
question is asked the same way everywhere and the precheck's verdicts are pure functions of facts.
Nothing here writes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

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


T = TypeVar("T")
Rows = list[dict[str, Any]]


class FactKind(StrEnum):
    """What a fact asks; a port that does not run SQL (the plan preview) answers by kind and subject."""

    VERSION = "version"
    IDENTITY = "identity"
    TENANT_ROLES = "tenant roles"
    TOPOLOGY_SERVERS = "topology servers"
    TOPOLOGY_ZONES = "topology zones"
    PARAMETER = "parameter"
    USER_EXISTS = "user exists"
    USER_PASSWORD_HASH = "user password hash"
    GRANTS = "grants"
    SERVERS = "servers"
    ZONES = "zones"
    ROOT_SERVICE = "root service"
    OB_VERSION = "ob version"
    TENANTS = "tenants"
    UNIT_CONFIGS = "unit configs"
    POOLS = "resource pools"
    UNITS = "units"
    SERVER_STATUS = "server status"
    ZONE_STATUS = "zone status"
    IO_CALIBRATION = "io calibration"
    SERVICE_NOT_READY = "servers not serving"
    LOGIN = "login"
    ACTIVE_PLAN = "active resource plan"
    PLAN_EXISTS = "resource plan exists"
    GROUP_EXISTS = "consumer group exists"
    DIRECTIVES = "plan directives"
    MAPPING = "group mapping"
    RESOURCE_MANAGER = "resource manager of a user"
    PARAMETERS = "parameters"


@dataclass(frozen=True)
class Fact(Generic[T]):
    """A read-only question to a cluster's sys tenant, as pyinfra's facts: what it asks and about what, the
    statement that asks it, and the pure parser of the answer's rows."""

    kind: FactKind
    statement: str
    parse: Callable[[Rows], T]
    subject: tuple[str, ...] = ()


def _rows(rows: Rows) -> Rows:
    return rows


def _any(rows: Rows) -> bool:
    return bool(rows)


def _first(column: str, default: str = "") -> Callable[[Rows], str]:
    return lambda rows: str(rows[0][column] or default) if rows else default


VERSION = Fact(FactKind.VERSION, VERSION_SQL, _first("VERSION"))
IDENTITY = Fact(FactKind.IDENTITY, IDENTITY_SQL, _rows)
# The identity parameters and obconfig_url (one row per server and parameter): the subject names the extra one.
IDENTITY_AND_CONFIG_URL = Fact(
    FactKind.IDENTITY,
    sql.PARAMETERS_SQL.format(names="'cluster', 'cluster_id', 'obconfig_url'"),
    _rows,
    ("obconfig_url",),
)
TENANT_ROLES = Fact(FactKind.TENANT_ROLES, TENANT_ROLES_SQL, _rows)
TOPOLOGY_SERVERS = Fact(FactKind.TOPOLOGY_SERVERS, TOPOLOGY_SERVERS_SQL, _rows)
TOPOLOGY_ZONES = Fact(FactKind.TOPOLOGY_ZONES, TOPOLOGY_ZONES_SQL, _rows)
SERVERS = Fact(FactKind.SERVERS, sql.SERVERS_SQL, _rows)
ZONES = Fact(FactKind.ZONES, sql.ZONES_SQL, _rows)
ROOT_SERVICE = Fact(FactKind.ROOT_SERVICE, sql.RS_LIST_SQL, sql.rs_list_from_locations)
OB_VERSION = Fact(FactKind.OB_VERSION, sql.OB_VERSION_SQL, _first("VERSION"))
TENANTS = Fact(FactKind.TENANTS, sql.TENANTS_SQL, sql.tenant_rows)
UNIT_CONFIGS = Fact(FactKind.UNIT_CONFIGS, sql.UNIT_CONFIGS_SQL, sql.unit_config_rows)
POOLS = Fact(FactKind.POOLS, sql.POOLS_SQL, sql.pool_rows)
UNITS = Fact(FactKind.UNITS, sql.UNITS_SQL, sql.unit_rows)
SERVICE_NOT_READY = Fact(FactKind.SERVICE_NOT_READY, sql.SERVICE_NOT_READY_SQL, lambda rows: int(rows[0]["NOT_READY"]))
LOGIN = Fact(FactKind.LOGIN, sql.LOGIN_CHECK_SQL, _any)
ACTIVE_PLAN = Fact(FactKind.ACTIVE_PLAN, sql.ACTIVE_PLAN_SQL, _first("PLAN"))


def parameter(name: str) -> Fact[str]:
    """A cluster parameter's value ('' when the cluster does not report it)."""
    return Fact(FactKind.PARAMETER, sql.parameter(name), _first("VALUE"), (name,))


def parameters(*names: str) -> Fact[dict[str, str]]:
    """Cluster parameters' values by name, in one statement ('' for one the cluster does not report)."""

    statement = sql.PARAMETERS_SQL.format(names=", ".join(sql.quote(name) for name in names))
    return Fact(FactKind.PARAMETERS, statement, lambda rows: _parameter_values(rows, names), names)


def _parameter_values(rows: Rows, names: tuple[str, ...]) -> dict[str, str]:
    """`names`' values in GV$OB_PARAMETERS rows (one per server): the first row of each name wins, as
    `parameter`'s LIMIT 1; '' for a name no row has."""
    values = {name: "" for name in names}
    for row in reversed(rows):
        values[str(row["NAME"]).lower()] = str(row["VALUE"] or "")
    return values


def user_exists(user: str) -> Fact[bool]:
    return Fact(FactKind.USER_EXISTS, sql.user_exists(user), _any, (user,))


def user_password_hash(user: str) -> Fact[str]:
    """The user's stored password hash ('' for none or no such user)."""
    return Fact(FactKind.USER_PASSWORD_HASH, sql.user_password_hash(user), _first("PASSWORD"), (user,))


def grants(user: str) -> Fact[list[str]]:
    """The user's grants, as SHOW GRANTS lists them."""
    return Fact(
        FactKind.GRANTS, sql.show_grants(user), lambda rows: [str(next(iter(r.values()))) for r in rows], (user,)
    )


def server_status(server: ServerNode) -> Fact[str | None]:
    """The server's STATUS in DBA_OB_SERVERS; None once it is no longer listed."""
    parse: Callable[[Rows], str | None] = lambda rows: str(rows[0]["STATUS"]) if rows else None  # noqa: E731
    return Fact(FactKind.SERVER_STATUS, sql.server_status(server.ip, server.rpc_port), parse, (server.label,))


def zone_status(zone: str) -> Fact[str | None]:
    """The zone's STATUS in DBA_OB_ZONES; None once it is no longer listed."""
    parse: Callable[[Rows], str | None] = lambda rows: str(rows[0]["STATUS"]) if rows else None  # noqa: E731
    return Fact(FactKind.ZONE_STATUS, sql.zone_status(zone), parse, (zone,))


def io_calibration(server: ServerNode) -> Fact[dict[str, Any]]:
    """The server's latest io calibration row ({} when it never ran)."""
    statement = sql.io_calibration_status(server.ip, server.rpc_port)
    return Fact(FactKind.IO_CALIBRATION, statement, lambda rows: dict(rows[0]) if rows else {}, (server.label,))


def plan_exists(plan: str) -> Fact[bool]:
    return Fact(FactKind.PLAN_EXISTS, sql.PLAN_EXISTS_SQL.format(plan=sql.quote(plan)), _any, (plan,))


def group_exists(group: str) -> Fact[bool]:
    return Fact(FactKind.GROUP_EXISTS, sql.GROUP_EXISTS_SQL.format(group=sql.quote(group)), _any, (group,))


def directives(group: str) -> Fact[list[str]]:
    """The plans that have a directive for `group`."""
    statement = sql.DIRECTIVES_SQL.format(group=sql.quote(group))
    return Fact(FactKind.DIRECTIVES, statement, lambda rows: [str(r["PLAN"]) for r in rows], (group,))


def mapping(user: str) -> Fact[str | None]:
    """The consumer group the user is mapped to (None: none)."""
    parse: Callable[[Rows], str | None] = lambda rows: str(rows[0]["CONSUMER_GROUP"]) if rows else None  # noqa: E731
    return Fact(FactKind.MAPPING, sql.MAPPING_SQL.format(user=sql.quote(user)), parse, (user,))


@dataclass(frozen=True)
class ResourceManagerState:
    """What the resource manager holds for a user's consumer group: the active plan ("" none), whether the
    group and the default plan exist, whether the plan the group goes in has its directive, and the group the
    user is mapped to (None: none)."""

    active_plan: str
    group_exists: bool
    plan_exists: bool
    directive_exists: bool
    mapped_group: str | None


def resource_manager(plan: str, group: str, user: str) -> Fact[ResourceManagerState]:
    """`ResourceManagerState` for `user` in `group`, with `plan` as the plan when none is active: one statement."""

    def parse(rows: Rows) -> ResourceManagerState:
        row = rows[0]
        mapped = row["MAPPED_GROUP"]
        return ResourceManagerState(
            active_plan=str(row["ACTIVE_PLAN"] or ""),
            group_exists=int(row["GROUPS_FOUND"]) > 0,
            plan_exists=int(row["PLANS_FOUND"]) > 0,
            directive_exists=int(row["DIRECTIVES_FOUND"]) > 0,
            mapped_group=None if mapped is None else str(mapped),
        )

    statement = sql.RESOURCE_MANAGER_SQL.format(plan=sql.quote(plan), group=sql.quote(group), user=sql.quote(user))
    return Fact(FactKind.RESOURCE_MANAGER, statement, parse, (plan, group, user))


def read_topology(port: ClusterPort) -> Topology:
    """Name, id, version, servers and zones, as root@sys; the version is checked first, so a server that is
    not OceanBase 4.x is named as such instead of failing on a missing view."""
    with _oceanbase_views(port):
        version_text = port.read(VERSION)
        parse_version(version_text)
        return parse_topology(
            version_text,
            port.read(IDENTITY),
            port.read(TOPOLOGY_SERVERS),
            port.read(TOPOLOGY_ZONES),
            port.read(TENANT_ROLES),
        )


def read_cluster_facts(port: ClusterPort) -> ClusterFacts:
    """The topology, the config URL and every server's state: five statements, as the topology alone (the
    identity parameters come with obconfig_url, and the servers' rows with their state)."""
    with _oceanbase_views(port):
        version_text = port.read(VERSION)
        parse_version(version_text)
        parameters = port.read(IDENTITY_AND_CONFIG_URL)
        servers = port.read(SERVERS)
        topology = parse_topology(version_text, parameters, servers, port.read(TOPOLOGY_ZONES), port.read(TENANT_ROLES))
    config_url = _parameter_values(parameters, ("obconfig_url",))["obconfig_url"]
    return ClusterFacts(topology=topology, servers=servers, config_url=config_url)


@contextmanager
def _oceanbase_views(port: ClusterPort) -> Iterator[None]:
    """A missing system view names the server as not OceanBase."""
    try:
        yield
    except ClusterSqlError as exc:
        if exc.code == _NO_SUCH_TABLE:
            raise NotOceanBase(
                "the server lacks OceanBase's system views; check that address and port point at "
                "an OceanBase cluster's sys tenant",
                node=port.where,
            ) from None
        raise


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


async def read_observer_process(port: HostPort, server: ServerNode, *, with_disk: bool = False) -> ObserverProcess:
    """The observer of `server`: pid, OS user, start time, command line, install, data and log directories
    (and, `with_disk`, their free space). ObserverNotRunning when nothing listens on its SQL port,
    FailedPrecondition when the host's tools answer in an unknown shape. One command where the observer is
    the only listener on its port (`host_commands.observer_on_port`), two otherwise."""
    script = commands.observer_on_port(server.ip, server.sql_port, with_disk=with_disk)
    parts = (await port.run(script, what=f"reading the process on port {server.sql_port}")).stdout.split(
        f"{commands.SECTION}\n", 2
    )
    listeners = parts[0].strip()
    found = commands.parse_listener(listeners, server.ip, server.sql_port)
    if found is None:
        raise ObserverNotRunning(
            f"no observer process listens on SQL port {server.sql_port} of host {server.ip} "
            f"(listeners: {listeners or 'none'}); start the observer and retry (OCP 11053)",
            node=server.label,
        )
    name, pid = found
    if len(parts) == 3 and parts[1].strip() == str(pid):
        output = parts[2]
    else:  # the shell read another listener first: read the one the parser chose
        script = commands.process_details_with_disk(pid) if with_disk else commands.process_details(pid)
        output = (await port.run(script, what=f"reading process {pid}")).stdout
    try:
        if not with_disk:
            return ObserverProcess(name=name, pid=pid, details=commands.parse_process_details(output, pid, name))
        described, measured = commands.sections(output, 2)
        details = commands.parse_process_details(described, pid, name)
        dirs = (details["data_dir"], details["log_dir"])
        data_dir, _, free = measured.partition("\n")
        if data_dir != details["data_dir"]:
            # The shell read the command line otherwise (an empty or repeated option): measure the directories
            # this parser names.
            free = (await port.run(commands.disk_free(*dirs), what="measuring free space")).stdout
        details["data_disk_free_kb"], details["log_disk_free_kb"] = commands.parse_disk_free(free, 2)
    except ValueError as exc:
        raise FailedPrecondition(f"{exc}; check `ps`, `df` and /proc on host {server.ip}", node=server.label) from None
    return ObserverProcess(name=name, pid=pid, details=details)
