"""Adopting the servers that joined a managed cluster after its takeover, as the takeover adopts its own.

A repair task whose report names `contracts.stages.ADOPT_SERVER` gets the servers that joined in its topology
(with the servers of any drifted host). "Precheck new servers" runs the takeover's precheck items on them and
their hosts, writing nothing; "Reserve new hosts" registers their hosts the way the takeover registered the
cluster's (its request's hostInfo, as the hosts it registered record it) and reserves them for the cluster.
The takeover's own subtasks follow: process info, agent configuration and modules, "Sync cluster info".
Everything acts for the takeover's task, so that a release undoes an adopted host as it undoes the others.
"""

from __future__ import annotations

import asyncio

from activities import facts
from activities.facts import CLOCK_OFFSET_LIMIT_S, read_host_facts
from activities.precheck import CheckItems, HostReading, check_hosts, check_servers_and_zones, read_host
from activities.runtime import Work
from contracts.errors import FailedPrecondition
from contracts.messages import FAILED, WARNING, CheckItem
from contracts.request import HostInfo, HostKind
from contracts.target import TakeoverOptions
from contracts.topology import ServerNode, Topology
from metadb import clusters, hosts

# What an operator does about a failed adoption check (the items say what is wrong).
_WHAT_TO_DO = (
    "put the host right and retry this subtask, or roll the repair back: nothing was written for the new server(s) yet"
)


def _recorded_servers(work: Work) -> list[ServerNode]:
    """The cluster's servers as the metadb records them."""
    return [
        ServerNode(ip=row["ip"], rpc_port=int(row["rpc_port"]), sql_port=int(row["sql_port"]), zone=row["zone"])
        for row in clusters.rows_of(work.db, "servers", work.cluster_id())
    ]


def _joined(work: Work, recorded: list[ServerNode]) -> list[ServerNode]:
    """The servers of the task's topology that the metadb does not record: the ones to adopt."""
    topology = work.arg.topology
    assert topology is not None
    known = {server.label for server in recorded}
    return [server for server in topology.servers if server.label not in known]


def adoption_options(work: Work) -> tuple[TakeoverOptions, str]:
    """How the takeover registered the cluster's hosts (its request's hostInfo), and where that was read."""
    row = hosts.registration_of(work.db, work.cluster_id(), work.owner_task_id)
    if row is None:
        return TakeoverOptions(), "no host of the cluster is registered"
    info = HostInfo(
        kind=HostKind(row["kind"]),
        publish_ports=row["publish_ports"],
        host_type_id=int(row["host_type_id"]),
        credential_id=int(row["credential_id"]),
        ssh_port=int(row["ssh_port"]),
    )
    source = (
        f"as task {work.owner_task_id} registered {row['ip']}"
        if row["registered_by_task_id"] == work.owner_task_id
        else f"as {row['ip']} of the cluster is registered"
    )
    return TakeoverOptions(host_info=info), source


# --- Precheck new servers -------------------------------------------------------------------------------


async def precheck_new_servers(work: Work) -> None:
    """The takeover's precheck items for the servers that joined: each one active, its zone with region and
    IDC; its host known or registrable with the takeover's hostInfo, reachable over SSH, its clock in sync,
    its observer running (as admin), one observer on it; install paths and architecture the same as on the
    cluster's other hosts (read again for that). Only the new servers' and hosts' failures (and the
    cluster-wide items) stop the adoption; nothing is written."""
    recorded = await asyncio.to_thread(_recorded_servers, work)
    joined = _joined(work, recorded)
    if not joined:
        work.say("no server to adopt: every server of the task is recorded already")
        return
    options, source = await asyncio.to_thread(adoption_options, work)
    work.say(
        f"adopting {', '.join(s.label for s in joined)}; new hosts registered with the takeover's hostInfo ({source})"
        if options.host_info
        else f"adopting {', '.join(s.label for s in joined)}; {source}"
    )
    out = CheckItems()
    cluster = await asyncio.to_thread(lambda: facts.read_cluster_facts(work.sys))
    check_servers_and_zones(out, cluster)
    zones = {server.zone for server in joined}
    labels = {server.label for server in joined}
    ips = {server.ip for server in joined}
    out.items = [item for item in out.items if item.node in labels or item.node in zones]
    whole = cluster.topology.model_copy(update={"servers": [*recorded, *joined]})
    readings = await asyncio.gather(*(_read(work, options, whole, host.ip, ips) for host in whole.hosts))
    check_hosts(out, whole, readings)
    blocking: list[CheckItem] = []
    for item in out.items:
        ours = item.node is None or item.node in labels or item.node in ips or item.node in zones
        if item.status == FAILED and ours:
            blocking.append(item)
        elif item.status != FAILED and (item.node is None or item.node in labels or item.node in ips):
            work.say(f"{item.status} {item.name}{_on(item)}: {item.message}")
        elif item.status == FAILED:
            # An existing host's problem is the verification's to report; it does not stop the adoption.
            work.say(f"{WARNING} {item.name}{_on(item)} (not a new server's): {item.message}")
    if blocking:
        raise FailedPrecondition(
            "precheck of the new server(s) failed: "
            + "; ".join(f"{item.name}{_on(item)}: {item.message}" for item in blocking)
            + f"; {_WHAT_TO_DO}"
        )
    work.say(f"precheck passed for {', '.join(sorted(labels))}")


async def _read(work: Work, options: TakeoverOptions, topology: Topology, ip: str, new: set[str]) -> HostReading:
    """A host as the precheck reads it; a new host the takeover's hostInfo cannot register gets its own
    advice (there is no request to add hostInfo to)."""
    if ip in new and options.host_info is None and await asyncio.to_thread(hosts.find_host, work.db, ip) is None:
        reading = HostReading(ip)
        reading.access.add(
            "host known or in hostInfo",
            FAILED,
            "host not managed here, and no host of the cluster records the takeover's hostInfo to register it "
            "with: add the host with the credential that logs in there, or take the cluster over again",
            11044,
            ip,
        )
        return reading
    return await read_host(work.runtime, options, topology, ip)


def _on(item: CheckItem) -> str:
    return f" on {item.node}" if item.node else ""


# --- Reserve new hosts ----------------------------------------------------------------------------------


async def reserve_new_hosts(work: Work) -> None:
    """Register (acting for the takeover's task, with its hostInfo) and reserve the hosts of the servers that
    joined; a host reserved for the cluster already is left as it is."""
    recorded = await asyncio.to_thread(_recorded_servers, work)
    joined = _joined(work, recorded)
    new = list(dict.fromkeys(server.ip for server in joined))
    if not new:
        work.say("no new host to reserve")
        return
    options, source = await asyncio.to_thread(adoption_options, work)
    await asyncio.gather(*(_reserve(work, ip, options, source) for ip in new))


async def _reserve(work: Work, ip: str, options: TakeoverOptions, source: str) -> None:
    if await asyncio.to_thread(work.holds_host, ip):
        work.say(f"{ip}: reserved for the cluster already")
        return
    await asyncio.to_thread(_register, work, ip, options, source)
    async with work.host(ip, reserving=True) as client:
        measured = await read_host_facts(client)
    await asyncio.to_thread(lambda: hosts.reserve_host(work.db, ip, work.cluster_id(), measured.as_dict()))
    found, offset = measured.facts, measured.clock_offset
    note = (
        "" if measured.clock_in_sync else f"; WARNING clock offset {offset:+.2f}s exceeds {CLOCK_OFFSET_LIMIT_S:.0f}s"
    )
    work.say(
        f"{ip}: reserved; {found.hostname}, {found.os}, kernel {found.kernel}, {found.arch}, {found.cpus} CPUs, "
        f"{found.memory_kb // 1024} MiB, clock offset {offset:+.3f}s{note}"
    )


def _register(work: Work, ip: str, options: TakeoverOptions, source: str) -> None:
    existing = hosts.find_host(work.db, ip)
    if existing is not None:
        holder = existing["reserved_by_cluster_id"]
        if holder is not None and holder != work.cluster_id():
            raise FailedPrecondition(f"host is reserved by managed cluster {holder}", node=ip)
        return
    info = options.host_info
    if info is None:
        raise FailedPrecondition(f"host is not managed here and {source}: there is no hostInfo to register it", node=ip)
    hosts.register_host(
        work.db,
        ip=ip,
        ssh_port=info.ssh_port,
        kind=info.kind.value,
        publish_ports=info.publish_ports,
        host_type_id=info.host_type_id,
        credential_id=info.credential_id,
        # The takeover's task: a release forgets the host as it forgets the ones the takeover registered.
        task_id=work.owner_task_id,
    )
    work.say(f"{ip}: registered ({info.kind.value}, host type {info.host_type_id}, ssh port {info.ssh_port}, {source})")
