"""OCP's takeover precheck: what is checked, with OCP's codes, and what to do about each failure.

The precheck reads facts (`activities.facts`) through the worker's ports, then judges them with pure
functions, one per check. The same checks serve the `TakeOverPrecheck` workflow and the takeover's
"Prepare take over cluster", so the two cannot disagree. A precheck only reads: it writes nothing to
the cluster, the hosts or the metadb.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from activities import cluster_sql as sql
from activities import facts
from activities.facts import (
    CLOCK_OFFSET_LIMIT_S,
    ClusterFacts,
    MeasuredHost,
    ObserverProcess,
    read_cluster_facts,
    read_host_facts,
    read_observer_process,
    server_serving,
)
from activities.ob_sys_client import ConnectionSecurity, ReportsConnectionSecurity
from activities.runtime import Runtime
from contracts.engine import config_url_for, unreachable_config_url
from contracts.errors import (
    BadCredentials,
    ClusterUnreachable,
    CredentialMisuse,
    FailedPrecondition,
    HostCommandFailed,
    NotOceanBase,
    ObserverNotRunning,
    TakeoverError,
    UnsupportedVersion,
)
from contracts.messages import FAILED, PASSED, WARNING, CheckItem, PlannedStep, PrecheckInput, PrecheckReport
from contracts.request import ConnectionMode
from contracts.target import ClusterTarget, TakeoverOptions
from contracts.topology import ClusterEndpoint, ServerNode, Topology
from metadb import clusters, credentials, hosts, locks
from metadb.credentials import HOST

log = logging.getLogger("ob_takeover.activities")


class CheckItems:
    def __init__(self) -> None:
        self.items: list[CheckItem] = []

    def add(self, name: str, status: str, message: str, code: int | None = None, node: str | None = None) -> None:
        self.items.append(CheckItem(name=name, code=code, status=status, message=message, node=node))


Preview = Callable[[Runtime, PrecheckInput, ClusterFacts, "list[HostReading]"], Awaitable[list[PlannedStep]]]


async def run_checks(
    runtime: Runtime, arg: PrecheckInput, *, preview: Preview | None = None, known: Topology | None = None
) -> PrecheckReport:
    """Every check that can run; a cluster that cannot be read stops at the checks that failed. With
    `preview` (`activities.preview.preview_takeover`), the report also shows what a takeover would send.

    `known`, the topology the task discovered moments before, lets the hosts be read while the cluster is:
    far from the cluster, the two together cost the slower of them instead of their sum. A cluster read
    that finds another topology has its hosts read again."""
    early: dict[str, asyncio.Future[HostReading]] = {}
    if known is not None:
        early = {h.ip: asyncio.ensure_future(read_host(runtime, arg.options, known, h.ip)) for h in known.hosts}
    try:
        return await _run_checks(runtime, arg, preview, known, early)
    finally:
        for reading in early.values():
            reading.cancel()
        await asyncio.gather(*early.values(), return_exceptions=True)


async def _run_checks(
    runtime: Runtime,
    arg: PrecheckInput,
    preview: Preview | None,
    known: Topology | None,
    early: dict[str, asyncio.Future[HostReading]],
) -> PrecheckReport:
    began = time.monotonic()
    target, where = arg.target, arg.target.where
    out = CheckItems()
    report = PrecheckReport()
    cluster: ClusterFacts | None = None
    try:
        endpoint = await asyncio.to_thread(runtime.credentials.endpoint, target.endpoint)
        read, security = await asyncio.to_thread(_read_cluster, runtime, endpoint)
        cluster = read
        out.add("cluster reachable", PASSED, f"{where} answers", 11028)
        out.add("root@sys login", PASSED, "root@sys logs in")
        out.add("OceanBase 4.x", PASSED, f"OceanBase {read.topology.version}")
        check_cluster_tls(out, security, where)
    except ClusterUnreachable as exc:
        out.add("cluster reachable", FAILED, f"{exc}", 11028, where)
    except BadCredentials as exc:
        out.add("cluster reachable", PASSED, f"{where} answers", 11028)
        out.add("root@sys login", FAILED, str(exc), node=where)
    except CredentialMisuse as exc:
        out.add("credential bound to this cluster", FAILED, str(exc), node=where)
    except (NotOceanBase, UnsupportedVersion) as exc:
        out.add("cluster reachable", PASSED, f"{where} answers", 11028)
        out.add("root@sys login", PASSED, "login accepted")
        out.add("OceanBase 4.x", FAILED, str(exc), node=where)
    except TakeoverError as exc:
        out.add("cluster reachable", FAILED, f"cannot read the cluster: {exc}", 11028, where)
    if cluster is not None:
        topology = cluster.topology
        try:
            await asyncio.to_thread(runtime.credentials.bind, target, target.discovered(topology).key)
        except CredentialMisuse as exc:
            out.add("credential bound to this cluster", FAILED, str(exc), node=where)
            cluster = None
    if cluster is not None:
        topology = cluster.topology
        report = PrecheckReport(
            cluster_name=topology.cluster_name,
            ob_cluster_id=topology.ob_cluster_id,
            version=topology.version,
            zones=[z.name for z in topology.zones],
            servers=[s.label for s in topology.servers],
            hosts=[h.ip for h in topology.hosts],
        )
        check_connection_mode(out, target.endpoint, topology)
        await asyncio.to_thread(_check_management, out, runtime, arg, topology)
        check_config_url(out, runtime.public_url, arg.options, topology, cluster.config_url)
        check_servers_and_zones(out, cluster)
        if known is None or known.servers != topology.servers:
            early = {}
        host_readings = asyncio.gather(
            *(early.get(h.ip) or read_host(runtime, arg.options, topology, h.ip) for h in topology.hosts)
        )
        proxyro = CheckItems()
        readings, _ = await asyncio.gather(host_readings, _check_proxyro_login(proxyro, runtime, target, endpoint))
        check_hosts(out, topology, readings)
        out.items.extend(proxyro.items)
        if preview is not None:
            try:
                plan = await preview(runtime, arg, cluster, readings)
            except Exception as exc:  # the preview only informs: the checks stand without it
                log.exception("plan preview of %s failed", where)
                plan = [PlannedStep(subtask="Plan preview", note=f"unavailable: {type(exc).__name__}")]
            report = report.model_copy(update={"plan": plan})
    return report.model_copy(
        update={
            "items": out.items,
            "passed": not any(item.status == FAILED for item in out.items),
            "seconds": round(time.monotonic() - began, 3),
        }
    )


def _read_cluster(runtime: Runtime, endpoint: ClusterEndpoint) -> tuple[ClusterFacts, ConnectionSecurity | None]:
    """The cluster's facts, and how the connection they were read over was protected (None: the port
    cannot tell, as the plan preview's recorder cannot)."""
    with runtime.cluster(endpoint) as port:
        cluster = read_cluster_facts(port)
        security = port.connection_security() if isinstance(port, ReportsConnectionSecurity) else None
        return cluster, security


# --- the cluster ---------------------------------------------------------------------------------


CLUSTER_TLS = "TLS to the cluster"
_VERIFY_TLS = (
    "set cluster_tls (OB_TAKEOVER_CLUSTER_TLS) to verify_identity (or verify_ca) and cluster_tls_ca "
    "(OB_TAKEOVER_CLUSTER_TLS_CA) to the CA that signed the cluster's certificate"
)


def check_cluster_tls(out: CheckItems, security: ConnectionSecurity | None, where: str) -> None:
    """A warning when the sys-tenant connection was not TLS with a checked certificate: the default
    `cluster_tls = preferred` checks none, so a man in the middle can relay root@sys's login and read the
    passwords the takeover sets. Kept a warning, as clusters often have no certificate to check."""
    if security is None:
        return
    if not security.encrypted:
        out.add(
            CLUSTER_TLS,
            WARNING,
            "the connection is not encrypted: a man in the middle can relay root@sys's login and read the "
            f"passwords the takeover sets; enable TLS on the cluster and {_VERIFY_TLS}",
            node=where,
        )
    elif not security.certificate_verified:
        out.add(
            CLUSTER_TLS,
            WARNING,
            "TLS without a certificate check (cluster_tls preferred or required): a man in the middle can relay "
            f"root@sys's login and read the passwords the takeover sets; {_VERIFY_TLS}",
            node=where,
        )
    elif not security.host_name_verified:
        out.add(
            CLUSTER_TLS, PASSED, "TLS, certificate checked against cluster_tls_ca (verify_identity checks the name too)"
        )
    else:
        out.add(CLUSTER_TLS, PASSED, "TLS, certificate and host name checked")


def check_connection_mode(out: CheckItems, endpoint: ClusterEndpoint, topology: Topology) -> None:
    if endpoint.connection_mode != ConnectionMode.PROXY.value:
        return
    if endpoint.cluster_name != topology.cluster_name:
        out.add(
            "clusterName matches the cluster",
            FAILED,
            f"clusterName is {endpoint.cluster_name} but the cluster is {topology.cluster_name}; fix clusterName",
            11040,
        )
    else:
        out.add("clusterName matches the cluster", PASSED, f"cluster {topology.cluster_name}", 11040)
    if endpoint.ob_cluster_id is not None and endpoint.ob_cluster_id != topology.ob_cluster_id:
        out.add(
            "obClusterId matches the cluster",
            FAILED,
            f"obClusterId is {endpoint.ob_cluster_id} but the cluster's id is {topology.ob_cluster_id}; fix or omit "
            "obClusterId",
            11041,
        )


def _check_management(out: CheckItems, runtime: Runtime, arg: PrecheckInput, topology: Topology) -> None:
    record = clusters.find_cluster(runtime.db, topology.cluster_name, topology.ob_cluster_id)
    endpoint = arg.target.endpoint
    keys = locks.lock_keys(endpoint.address, endpoint.port, topology.cluster_name, topology.ob_cluster_id)
    check_management(out, arg, topology, record, locks.holder_of(runtime.db, keys))


def check_management(
    out: CheckItems,
    arg: PrecheckInput,
    topology: Topology,
    record: dict[str, Any] | None,
    holder: dict[str, Any] | None,
) -> None:
    """The cluster is neither managed here (except by this very task) nor locked by another task."""
    ours = record is not None and arg.task_id is not None and record["task_id"] == arg.task_id
    if record is not None and not ours:
        out.add(
            "not managed yet",
            FAILED,
            f"cluster {topology.cluster_name} (id {topology.ob_cluster_id}) is already managed here as cluster "
            f"{record['id']} ({record['status']})",
            11033,
        )
    else:
        out.add("not managed yet", PASSED, "the cluster is not managed here", 11033)
    if holder is not None and holder["workflow_id"] != arg.workflow_id:
        out.add(
            "not locked by a running task",
            FAILED,
            f"locked by task {holder['task_id']} ({holder['workflow_id']}) since {holder['locked_at']}; wait for it "
            "or abort it",
            11033,
        )
    else:
        out.add("not locked by a running task", PASSED, "no other task holds the cluster", 11033)


def check_config_url(
    out: CheckItems, public_url: str, options: TakeoverOptions, topology: Topology, current: str
) -> None:
    ours = config_url_for(public_url, topology.cluster_name, topology.ob_cluster_id)
    problem = unreachable_config_url(public_url, [server.ip for server in topology.servers])
    if options.switch_config_url and problem:
        out.add("config URL", FAILED, problem, 11016)
    elif not current or current == ours:
        out.add("config URL", PASSED, f"obconfig_url is '{current}'", 11016)
    elif options.switch_config_url:
        out.add(
            "config URL",
            WARNING,
            f"obconfig_url points at another config server ({current}); the takeover switches it to this one",
            11016,
        )
    else:
        out.add(
            "config URL",
            FAILED,
            f"obconfig_url points at another config server ({current}) and switchConfigUrl is false; the cluster "
            "would stay with the other platform: set switchConfigUrl to true",
            11016,
        )


def check_servers_and_zones(out: CheckItems, cluster: ClusterFacts) -> None:
    for row in cluster.servers:
        label = f"{row['SVR_IP']}:{row['SVR_PORT']}"
        if not server_serving(row):
            out.add(
                "server active",
                FAILED,
                f"status {row['STATUS']}, service {'stopped' if row['STOP_TIME'] else 'not started'}; bring the server "
                "back (ALTER SYSTEM START SERVER) before the takeover",
                11050,
                label,
            )
        else:
            out.add("server active", PASSED, "ACTIVE, service started", 11050, label)
    for zone in cluster.topology.zones:
        if not zone.region:
            out.add(
                "zone region", FAILED, "the zone has no region: ALTER SYSTEM MODIFY ZONE … REGION", 11035, zone.name
            )
        elif not zone.idc:
            out.add("zone IDC", FAILED, "the zone has no IDC: ALTER SYSTEM MODIFY ZONE … IDC", 11036, zone.name)
        else:
            out.add("zone region and IDC", PASSED, f"region {zone.region}, IDC {zone.idc}", 11035, zone.name)


async def _check_proxyro_login(
    out: CheckItems, runtime: Runtime, target: ClusterTarget, endpoint: ClusterEndpoint
) -> None:
    proxyro_password = await asyncio.to_thread(runtime.credentials.proxyro_password, target)
    if proxyro_password:
        await asyncio.to_thread(_check_proxyro, out, runtime, proxyro_password, endpoint)


def _check_proxyro(out: CheckItems, runtime: Runtime, password: str, endpoint: ClusterEndpoint) -> None:
    try:
        proxyro = endpoint.model_copy(update={"root_sys_password": password})
        with runtime.cluster(proxyro, sql.PROXYRO_USER) as port:
            port.read(facts.LOGIN)
        out.add("proxyro login", PASSED, "proxyroPassword logs in as proxyro")
    except TakeoverError as exc:
        with runtime.cluster(endpoint) as root:
            exists = root.read(facts.user_exists(sql.PROXYRO_USER))
        if exists:
            out.add(
                "proxyro login",
                FAILED,
                f"proxyroPassword does not log in as proxyro ({exc.type}); give the password the proxies use",
            )
        else:
            out.add(
                "proxyro login", WARNING, "proxyro does not exist yet; the takeover creates it with proxyroPassword"
            )


# --- the hosts -----------------------------------------------------------------------------------


@dataclass
class HostReading:
    """What the precheck learnt of one host: whether it may be reached, and its facts."""

    ip: str
    access: CheckItems = field(default_factory=CheckItems)
    measured: MeasuredHost | None = None
    # Per server on the host, its observer process (None: nothing listens on its SQL port).
    observers: list[tuple[ServerNode, ObserverProcess | None]] = field(default_factory=list)
    # Why reading stopped early (a command failed, SSH refused), as the item that reports it.
    problem: CheckItem | None = None


async def read_host(runtime: Runtime, options: TakeoverOptions, topology: Topology, ip: str) -> HostReading:
    reading = HostReading(ip)
    out = reading.access
    row, type_ok, credential_row = await asyncio.to_thread(_host_records, runtime, options, ip)
    info = options.host_info
    if row is not None:
        credential_id, ssh_port = int(row["credential_id"]), int(row["ssh_port"])
        out.add("host known or in hostInfo", PASSED, "host managed here", 11044, ip)
        holder = row["reserved_by_cluster_id"]
        if holder is not None and holder != await asyncio.to_thread(_own_cluster_id, runtime, topology):
            out.add(
                "host not held by another cluster",
                FAILED,
                f"host is reserved by managed cluster {holder}; a host serves one managed cluster",
                11044,
                ip,
            )
            return reading
    elif info is None:
        out.add(
            "host known or in hostInfo",
            FAILED,
            "host not managed here and the request has no hostInfo: add hostInfo with hostTypeId and credentialId",
            11044,
            ip,
        )
        return reading
    else:
        credential_id, ssh_port = info.credential_id, info.ssh_port
        out.add("host known or in hostInfo", PASSED, "covered by hostInfo", 11044, ip)
        if not type_ok:
            out.add("host type exists", FAILED, f"host type {info.host_type_id} does not exist", 11046, ip)
    if credential_row is None or credential_row["kind"] != HOST:
        out.add("host credential exists", FAILED, f"host credential {credential_id} does not exist", 11047, ip)
        return reading
    try:
        port = await asyncio.to_thread(
            runtime.host,
            ip,
            ssh_port=ssh_port,
            credential_id=credential_id,
            recorded_key=row.get("host_key") if row else None,
            connect_timeout=5,
        )
        async with port as client:
            out.add("SSH login", PASSED, f"{credential_row['username']}@{ip}:{ssh_port}", node=ip)
            reading.measured = await read_host_facts(client)
            for server in (s for s in topology.servers if s.ip == ip):
                try:
                    process: ObserverProcess | None = await read_observer_process(client, server)
                except ObserverNotRunning:
                    process = None
                reading.observers.append((server, process))
    except HostCommandFailed as exc:
        reading.problem = _problem(
            "host commands", f"{exc}; the host must run ps, ss, df and read /proc for its user", ip
        )
    except FailedPrecondition as exc:  # output in a shape the parsers do not know
        reading.problem = _problem("host commands", str(exc), ip)
    except TakeoverError as exc:
        reading.problem = _problem("SSH login", str(exc), ip)
    return reading


def _own_cluster_id(runtime: Runtime, topology: Topology) -> int | None:
    """The id this cluster is recorded under (a takeover being retried), if any."""
    row = clusters.find_cluster(runtime.db, topology.cluster_name, topology.ob_cluster_id)
    return int(row["id"]) if row else None


def _host_records(
    runtime: Runtime, options: TakeoverOptions, ip: str
) -> tuple[dict[str, Any] | None, bool, dict[str, Any] | None]:
    """The host's row, whether the request's host type exists, and the row of the credential to use."""
    row = hosts.find_host(runtime.db, ip)
    info = options.host_info
    type_ok = info is None or hosts.host_type_exists(runtime.db, info.host_type_id)
    credential_id = int(row["credential_id"]) if row else (info.credential_id if info else None)
    credential_row = credentials.describe_credential(runtime.db, credential_id=credential_id) if credential_id else None
    return row, type_ok, credential_row


def _problem(name: str, message: str, ip: str) -> CheckItem:
    return CheckItem(name=name, status=FAILED, message=message, node=ip)


def check_hosts(out: CheckItems, topology: Topology, readings: list[HostReading]) -> None:
    """Judge every host's facts, then what the hosts must have in common."""
    for reading in readings:
        out.items.extend(reading.access.items)
        check_host(out, topology, reading)
    installs = [process.install_path for r in readings for _, process in r.observers if process is not None]
    paths = Counter(installs)
    relative = {p.split("/home/admin/", 1)[-1] if "/home/admin/" in p else p for p in paths}
    if len(relative) > 1:
        out.add("install paths consistent", FAILED, f"observers installed in {sorted(paths)}; use one path", 11049)
    elif paths:
        out.add("install paths consistent", PASSED, f"install path {sorted(relative)[0]}", 11049)
    arches = {r.measured.facts.arch for r in readings if r.measured is not None}
    if len(arches) > 1:
        out.add("one architecture", FAILED, f"hosts mix architectures {sorted(arches)}", 11023)
    elif arches:
        out.add("one architecture", PASSED, f"all hosts {arches.pop()}", 11023)


def check_host(out: CheckItems, topology: Topology, reading: HostReading) -> None:
    ip = reading.ip
    if reading.measured is not None:
        offset = reading.measured.clock_offset
        if not reading.measured.clock_in_sync:
            limit = CLOCK_OFFSET_LIMIT_S
            out.add("clock offset", FAILED, f"clock differs by {offset:+.2f}s (limit {limit:.0f}s): sync NTP", node=ip)
        else:
            out.add("clock offset", PASSED, f"{offset:+.3f}s", node=ip)
        on_host = [s for s in topology.servers if s.ip == ip]
        if len(on_host) > 1:
            ports = ", ".join(str(s.sql_port) for s in on_host)
            out.add(
                "one observer per host",
                FAILED,
                f"{len(on_host)} observers on this host (SQL ports {ports}); OCP manages one observer per host",
                node=ip,
            )
    for server, process in reading.observers:
        if process is None:
            out.add(
                "observer process",
                FAILED,
                f"no process listens on SQL port {server.sql_port}; start the observer",
                11053,
                server.label,
            )
            continue
        out.add("observer process", PASSED, f"{process.name} pid {process.pid}", 11053, server.label)
        if process.os_user != "admin":
            out.add(
                "observer OS user",
                WARNING,
                f"observer runs as {process.os_user}, OCP expects admin",
                11054,
                server.label,
            )
        else:
            out.add("observer OS user", PASSED, "admin", 11054, server.label)
    if reading.problem is not None:
        out.items.append(reading.problem)
