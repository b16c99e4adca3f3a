"""OCP's takeover precheck: what is checked, with OCP's codes, and what to do about each failure.

The same checks serve the `TakeOverPrecheck` workflow and the takeover's "Prepare take over cluster",
so the two cannot disagree. A precheck only reads: it writes nothing to the cluster, hosts or metadb.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from activities import cluster_sql as sql
from activities import host_commands as commands
from activities.host_client import HostClient, HostKeyCheck
from activities.ob_sys_client import ObSysClient
from activities.runtime import Runtime
from activities.takeover_plan import takeover_plan
from activities.topology import read_topology
from contracts.errors import (
    BadCredentials,
    ClusterUnreachable,
    HostCommandFailed,
    NotOceanBase,
    TakeoverError,
    UnsupportedVersion,
)
from contracts.messages import FAILED, PASSED, WARNING, CheckItem, PrecheckInput, PrecheckReport
from contracts.request import ConnectionMode, TakeOverRequest
from contracts.topology import ClusterEndpoint, Topology
from metadb import clusters, hosts, locks
from metadb.credentials import HOST, get_credential

# A host whose clock differs from the worker's by more than this fails the check (OCP checks 1 s).
CLOCK_OFFSET_LIMIT_S = 1.0


class _Items:
    def __init__(self) -> None:
        self.items: list[CheckItem] = []

    def add(self, name: str, status: str, message: str, code: int | None = None, node: str | None = None) -> None:
        self.items.append(CheckItem(name=name, code=code, status=status, message=message, node=node))


async def run_checks(runtime: Runtime, arg: PrecheckInput) -> PrecheckReport:
    """Every check that can run; a cluster that cannot be read stops at the checks that failed."""
    began = time.monotonic()
    request = arg.request
    out = _Items()
    report = PrecheckReport()
    topology: Topology | None = None
    config_url = ""
    try:
        endpoint = await asyncio.to_thread(runtime.endpoint_for, request)
        read, config_url, servers = await asyncio.to_thread(_read_cluster, endpoint)
        topology = read
        out.add("cluster reachable", PASSED, f"{request.endpoint} answers", 11028)
        out.add("root@sys login", PASSED, "root@sys logs in")
        out.add("OceanBase 4.x", PASSED, f"OceanBase {read.version}")
    except ClusterUnreachable as exc:
        out.add("cluster reachable", FAILED, f"{exc}", 11028, request.endpoint)
    except BadCredentials as exc:
        out.add("cluster reachable", PASSED, f"{request.endpoint} answers", 11028)
        out.add("root@sys login", FAILED, str(exc), node=request.endpoint)
    except (NotOceanBase, UnsupportedVersion) as exc:
        out.add("cluster reachable", PASSED, f"{request.endpoint} answers", 11028)
        out.add("root@sys login", PASSED, "login accepted")
        out.add("OceanBase 4.x", FAILED, str(exc), node=request.endpoint)
    except TakeoverError as exc:
        out.add("cluster reachable", FAILED, f"cannot read the cluster: {exc}", 11028, request.endpoint)
    if topology is not None:
        report = PrecheckReport(
            cluster_name=topology.cluster_name,
            ob_cluster_id=topology.ob_cluster_id,
            version=topology.version,
            zones=[z.name for z in topology.zones],
            servers=[s.label for s in topology.servers],
            hosts=[h.ip for h in topology.hosts],
            plan=takeover_plan(request, topology, runtime.public_url),
        )
        _check_connection_mode(out, request, topology)
        _check_management(out, runtime, arg, topology)
        _check_config_url(out, runtime, request, config_url)
        _check_servers_and_zones(out, topology, servers)
        await _check_hosts(out, runtime, request, topology)
        if request.proxyro_password:
            await asyncio.to_thread(_check_proxyro, out, request, endpoint)
    return report.model_copy(
        update={
            "items": out.items,
            "passed": not any(item.status == FAILED for item in out.items),
            "seconds": round(time.monotonic() - began, 3),
        }
    )


def _read_cluster(endpoint: ClusterEndpoint) -> tuple[Topology, str, list[dict[str, Any]]]:
    with ObSysClient(endpoint) as client:
        topology = read_topology(client)
        rows = client.query(sql.parameter("obconfig_url"))
        servers = client.query(sql.SERVERS_SQL)
    return topology, str(rows[0]["VALUE"]) if rows else "", servers


def _check_connection_mode(out: _Items, request: TakeOverRequest, topology: Topology) -> None:
    if request.connection_mode is not ConnectionMode.PROXY:
        return
    if request.cluster_name != topology.cluster_name:
        out.add(
            "clusterName matches the cluster",
            FAILED,
            f"clusterName is {request.cluster_name} but the cluster is {topology.cluster_name}; fix clusterName",
            11040,
        )
    else:
        out.add("clusterName matches the cluster", PASSED, f"cluster {topology.cluster_name}", 11040)
    if request.ob_cluster_id is not None and request.ob_cluster_id != topology.ob_cluster_id:
        out.add(
            "obClusterId matches the cluster",
            FAILED,
            f"obClusterId is {request.ob_cluster_id} but the cluster's id is {topology.ob_cluster_id}; fix or omit "
            "obClusterId",
            11041,
        )


def _check_management(out: _Items, runtime: Runtime, arg: PrecheckInput, topology: Topology) -> None:
    record = clusters.find_cluster(runtime.db, topology.cluster_name, topology.ob_cluster_id)
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
    keys = locks.lock_keys(arg.request.address, arg.request.port, topology.cluster_name, topology.ob_cluster_id)
    holder = locks.holder_of(runtime.db, keys)
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


def _check_config_url(out: _Items, runtime: Runtime, request: TakeOverRequest, current: str) -> None:
    if not current or current.startswith(runtime.public_url):
        out.add("config URL", PASSED, f"obconfig_url is '{current}'", 11016)
    elif request.switch_config_url:
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


def _check_servers_and_zones(out: _Items, topology: Topology, servers: list[dict[str, Any]]) -> None:
    for row in servers:
        label = f"{row['SVR_IP']}:{row['SVR_PORT']}"
        if row["STATUS"] != "ACTIVE" or row["STOP_TIME"] is not None or row["START_SERVICE_TIME"] is None:
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
    for zone in topology.zones:
        if not zone.region:
            out.add(
                "zone region", FAILED, "the zone has no region: ALTER SYSTEM MODIFY ZONE … REGION", 11035, zone.name
            )
        elif not zone.idc:
            out.add("zone IDC", FAILED, "the zone has no IDC: ALTER SYSTEM MODIFY ZONE … IDC", 11036, zone.name)
        else:
            out.add("zone region and IDC", PASSED, f"region {zone.region}, IDC {zone.idc}", 11035, zone.name)


async def _check_hosts(out: _Items, runtime: Runtime, request: TakeOverRequest, topology: Topology) -> None:
    results = await asyncio.gather(*(_check_host(runtime, request, topology, h.ip) for h in topology.hosts))
    facts: dict[str, dict[str, Any]] = {}
    for items, host_facts in results:
        out.items.extend(items.items)
        facts.update(host_facts)
    installs = {ip: f.get("install_paths", []) for ip, f in facts.items()}
    paths = Counter(path for values in installs.values() for path in values)
    relative = {p.split("/home/admin/", 1)[-1] if "/home/admin/" in p else p for p in paths}
    if len(relative) > 1:
        out.add("install paths consistent", FAILED, f"observers installed in {sorted(paths)}; use one path", 11049)
    elif paths:
        out.add("install paths consistent", PASSED, f"install path {sorted(relative)[0]}", 11049)
    arches = {f["arch"] for f in facts.values() if "arch" in f}
    if len(arches) > 1:
        out.add("one architecture", FAILED, f"hosts mix architectures {sorted(arches)}", 11023)
    elif arches:
        out.add("one architecture", PASSED, f"all hosts {arches.pop()}", 11023)


async def _check_host(
    runtime: Runtime, request: TakeOverRequest, topology: Topology, ip: str
) -> tuple[_Items, dict[str, dict[str, Any]]]:
    out = _Items()
    row = hosts.find_host(runtime.db, ip)
    info = request.host_info
    if row is not None:
        credential_id, ssh_port = int(row["credential_id"]), int(row["ssh_port"])
        out.add("host known or in hostInfo", PASSED, "host managed here", 11044, ip)
    elif info is None:
        out.add(
            "host known or in hostInfo",
            FAILED,
            "host not managed here and the request has no hostInfo: add hostInfo with hostTypeId and credentialId",
            11044,
            ip,
        )
        return out, {}
    else:
        credential_id, ssh_port = info.credential_id, info.ssh_port
        out.add("host known or in hostInfo", PASSED, "covered by hostInfo", 11044, ip)
        if not hosts.host_type_exists(runtime.db, info.host_type_id):
            out.add("host type exists", FAILED, f"host type {info.host_type_id} does not exist", 11046, ip)
    credential_row = runtime.db.one("SELECT kind FROM credentials WHERE id = ?", (credential_id,))
    if credential_row is None or credential_row["kind"] != HOST:
        out.add("host credential exists", FAILED, f"host credential {credential_id} does not exist", 11047, ip)
        return out, {}
    credential = get_credential(runtime.db, runtime.vault, credential_id)
    keys = HostKeyCheck(
        known_hosts=runtime.known_hosts,
        recorded_key=row.get("host_key") if row else None,
        trust_on_first_use=runtime.trust_on_first_use,
    )
    facts: dict[str, Any] = {}
    try:
        async with HostClient(ip, ssh_port, credential, keys, connect_timeout=5) as client:
            out.add("SSH login", PASSED, f"{credential.username}@{ip}:{ssh_port}", node=ip)
            before = time.time()
            output = (await client.run(commands.HOST_FACTS, what="the facts script")).stdout
            host_facts = commands.parse_host_facts(output)
            offset = host_facts.epoch - (before + time.time()) / 2
            facts["arch"] = host_facts.arch
            if abs(offset) > CLOCK_OFFSET_LIMIT_S:
                out.add("clock offset", FAILED, f"clock differs by {offset:+.2f}s (limit 1s): sync NTP", node=ip)
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
            facts["install_paths"] = []
            for server in on_host:
                listeners = (await client.run(commands.listening_process(server.sql_port))).stdout
                found = commands.parse_listener(listeners, server.ip, server.sql_port)
                if found is None:
                    out.add(
                        "observer process",
                        FAILED,
                        f"no process listens on SQL port {server.sql_port}; start the observer",
                        11053,
                        server.label,
                    )
                    continue
                name, pid = found
                read = await client.run(commands.process_details(pid), what=f"reading process {pid}")
                details = commands.parse_process_details(read.stdout, pid, name)
                facts["install_paths"].append(details["install_path"])
                out.add("observer process", PASSED, f"{name} pid {pid}", 11053, server.label)
                if details["os_user"] != "admin":
                    out.add(
                        "observer OS user",
                        WARNING,
                        f"observer runs as {details['os_user']}, OCP expects admin",
                        11054,
                        server.label,
                    )
                else:
                    out.add("observer OS user", PASSED, "admin", 11054, server.label)
    except HostCommandFailed as exc:
        out.add("host commands", FAILED, f"{exc}; the host must run ps, ss, df and read /proc for its user", node=ip)
    except ValueError as exc:  # output in a shape the parsers do not know
        out.add("host commands", FAILED, f"{ip}: {exc}", node=ip)
    except TakeoverError as exc:
        out.add("SSH login", FAILED, f"{exc}", node=ip)
    return out, {ip: facts}


def _check_proxyro(out: _Items, request: TakeOverRequest, endpoint: ClusterEndpoint) -> None:
    assert request.proxyro_password is not None
    try:
        proxyro = endpoint.model_copy(update={"root_sys_password": request.proxyro_password})
        with ObSysClient(proxyro, user=sql.PROXYRO_USER) as client:
            client.query("SELECT 1 AS OK")
        out.add("proxyro login", PASSED, "proxyroPassword logs in as proxyro")
    except TakeoverError as exc:
        with ObSysClient(endpoint) as root:
            exists = bool(root.query(sql.user_exists(sql.PROXYRO_USER)))
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
