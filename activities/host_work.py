"""The takeover's host subtasks over SSH, each with its compensation next to it."""

from __future__ import annotations

import asyncio
import json

from activities import host_commands as commands
from activities.cluster_records import config_url, monitor_password, undo_in_metadb
from activities.cluster_sql import MONITOR_USER
from activities.facts import CLOCK_OFFSET_LIMIT_S, read_host_facts, read_observer_process
from activities.ports import HostPort
from activities.runtime import Work
from contracts.errors import CredentialNotFound, FailedPrecondition, HostTypeNotFound
from metadb import clusters, credentials, hosts
from metadb.credentials import HOST

# --- Reserve host ----------------------------------------------------------------------------------


def _register(work: Work, ip: str) -> None:
    existing = hosts.find_host(work.db, ip)
    cluster_id = work.cluster_id()
    if existing is not None:
        holder = existing["reserved_by_cluster_id"]
        if holder is not None and holder != cluster_id:
            raise FailedPrecondition(f"host is reserved by managed cluster {holder}", node=ip)
        return
    info = work.arg.options.host_info
    if info is None:
        raise FailedPrecondition(
            "host is not managed here and the request has no hostInfo; add hostInfo "
            '{"hostTypeId": …, "credentialId": …} to the request (OCP 11044)',
            node=ip,
        )
    if not hosts.host_type_exists(work.db, info.host_type_id):
        raise HostTypeNotFound(f"{ip}: host type {info.host_type_id} does not exist (OCP 11046)")
    row = credentials.describe_credential(work.db, credential_id=info.credential_id)
    if row is None or row["kind"] != HOST:
        raise CredentialNotFound(f"{ip}: host credential {info.credential_id} does not exist (OCP 11047)")
    hosts.register_host(
        work.db,
        ip=ip,
        ssh_port=info.ssh_port,
        kind=info.kind.value,
        publish_ports=info.publish_ports,
        host_type_id=info.host_type_id,
        credential_id=info.credential_id,
        task_id=work.arg.task_id,
    )
    work.say(f"{ip}: registered ({info.kind.value}, host type {info.host_type_id}, ssh port {info.ssh_port})")


async def _reserve_one(work: Work, ip: str) -> None:
    await asyncio.to_thread(_register, work, ip)
    async with work.host(ip, reserving=True) as client:
        measured = await read_host_facts(client)
    await asyncio.to_thread(lambda: hosts.reserve_host(work.db, ip, work.cluster_id(), measured.as_dict()))
    facts, offset = measured.facts, measured.clock_offset
    note = (
        "" if measured.clock_in_sync else f"; WARNING clock offset {offset:+.2f}s exceeds {CLOCK_OFFSET_LIMIT_S:.0f}s"
    )
    work.say(
        f"{ip}: reserved; {facts.hostname}, {facts.os}, kernel {facts.kernel}, {facts.arch}, {facts.cpus} CPUs, "
        f"{facts.memory_kb // 1024} MiB, {facts.disk_free_kb // 1024} MiB free, clock offset {offset:+.3f}s{note}"
    )


async def reserve_hosts(work: Work) -> None:
    topology = work.arg.topology
    assert topology is not None
    await asyncio.gather(*(_reserve_one(work, host.ip) for host in topology.hosts))


def unreserve_hosts(work: Work) -> None:
    cluster_id = work.known_cluster_id()
    if cluster_id is None:
        work.say("no cluster record: nothing reserved")
        return
    removed = hosts.unreserve_hosts(work.db, cluster_id, work.owner_task_id)
    work.say(f"hosts unreserved; removed the ones this takeover registered: {', '.join(removed) or 'none'}")


# --- Update server process info (per server) ----------------------------------------------------------


async def update_server_process_info(work: Work) -> None:
    server = work.arg.server
    assert server is not None
    async with work.host(server.ip) as client:
        process = await read_observer_process(client, server, with_disk=True)
    info, name, pid = process.details, process.name, process.pid
    await asyncio.to_thread(
        lambda: clusters.record_server_process_info(
            work.db,
            work.cluster_id(),
            ip=server.ip,
            rpc_port=server.rpc_port,
            sql_port=server.sql_port,
            zone=server.zone,
            info=info,
        )
    )
    work.say(
        f"{server.label}: {name} pid {pid} as {info['os_user']} since {info['start_time']}, "
        f"install {info['install_path']}, data {info['data_dir']} ({info['data_disk_free_kb'] // 1024} MiB free), "
        f"log {info['log_dir']} ({info['log_disk_free_kb'] // 1024} MiB free)"
    )


def remove_server_process_info(work: Work) -> None:
    server = work.arg.server
    assert server is not None
    undo_in_metadb(
        work,
        lambda db, cluster_id: clusters.set_server_process_info(db, cluster_id, server.ip, server.rpc_port, None),
        f"{server.label}: process info removed",
    )


# --- Refresh ocp agent config (per host) ---------------------------------------------------------------


async def refresh_agent_config(work: Work) -> None:
    host = work.arg.host
    assert host is not None
    servers, password = await asyncio.to_thread(agent_inputs, work, host.ip)
    async with work.host(host.ip) as client:
        # Keyed to the task whose before-state a release restores: a repair acting for the takeover keeps
        # the takeover's backup and marker, and leaves none of its own.
        output = await client.run(
            commands.agent_key_and_file(work.owner_task_id, commands.AGENT_CONFIG_FILE),
            what=f"reading the agent key and {commands.AGENT_CONFIG_FILE}",
        )
        agent_key, current = host_sections(output.stdout, 2, host.ip)
        # Re-encrypting gives new bytes each time; keep the file as it is when only the nonce would change.
        if not same_agent_config(current, agent_key, password, work, servers):
            document = commands.agent_config(
                cluster_name=work.arg.target.name_and_id[0],
                ob_cluster_id=work.arg.target.name_and_id[1],
                monitor_user=MONITOR_USER,
                monitor_password_encrypted=commands.encrypt_for_agent(agent_key, password),
                servers=servers,
                config_url=config_url(work),
            )
            written = await client.run(
                commands.write_agent_file_and_reload(
                    commands.AGENT_CONFIG_FILE, work.owner_task_id, len(document.encode())
                ),
                input=document,
                what=f"writing {commands.AGENT_CONFIG_FILE} and reloading the agent",
            )
            work.say(f"{host.ip}: agent configuration written for {len(servers)} observer(s)")
            reload = written.stdout.strip()
        else:
            work.say(f"{host.ip}: agent configuration already current")
            reload = (await client.run(commands.RELOAD_AGENT, what="reloading the agent")).stdout.strip()
    work.say(f"{host.ip}: {reload}")


def host_sections(output: str, count: int, ip: str) -> list[str]:
    """The sections of a command's output (`host_commands.sections`); a host whose shell answered in another
    shape is named."""
    try:
        return commands.sections(output, count)
    except ValueError as exc:
        raise FailedPrecondition(f"{exc}; check the host's shell (bash, cat, base64)", node=ip) from None


def agent_inputs(work: Work, ip: str) -> tuple[list[dict[str, object]], str]:
    """The host's observers as the agent configuration lists them, and the monitor user's password."""
    servers: list[dict[str, object]] = [
        {
            "ip": row["ip"],
            "rpc_port": row["rpc_port"],
            "sql_port": row["sql_port"],
            "zone": row["zone"],
            **{
                k: v
                for k, v in json.loads(row["process_info"] or "{}").items()
                if k in ("install_path", "data_dir", "log_dir")
            },
        }
        for row in clusters.rows_of(work.db, "servers", work.cluster_id())
        if row["ip"] == ip
    ]
    return servers, monitor_password(work)


def same_agent_config(
    current: str, agent_key: str, password: str, work: Work, servers: list[dict[str, object]]
) -> bool:
    """Whether `current` is the configuration this subtask writes (the monitor password compared decrypted)."""
    try:
        document = json.loads(current)
        stored = commands.decrypt_for_agent(agent_key, document["monitor"]["password"])
    except Exception:
        return False
    expected = json.loads(
        commands.agent_config(
            cluster_name=work.arg.target.name_and_id[0],
            ob_cluster_id=work.arg.target.name_and_id[1],
            monitor_user=MONITOR_USER,
            monitor_password_encrypted=document["monitor"]["password"],
            servers=servers,
            config_url=config_url(work),
        )
    )
    return stored == password and document == expected


async def _restore_agent_file(client: HostPort, name: str, task_id: int) -> str:
    """Put back an agent file as it was before the task, and have a running agent reload it."""
    outcome = (await client.run(commands.restore_agent_file(name, task_id), what=f"restoring {name}")).stdout.strip()
    reload = (await client.run(commands.RELOAD_AGENT, what="reloading the agent")).stdout.strip()
    return f"{outcome}; {reload}"


async def restore_agent_config(work: Work) -> None:
    host = work.arg.host
    assert host is not None
    if not await asyncio.to_thread(work.holds_host, host.ip):
        work.say(f"{host.ip}: not reserved for this cluster, so nothing was changed there")
        return
    async with work.host(host.ip) as client:
        outcome = await _restore_agent_file(client, commands.AGENT_CONFIG_FILE, work.owner_task_id)
        await client.run(commands.remove_agent_key(work.owner_task_id), what="removing the agent key")
    work.say(f"{host.ip}: agent configuration {outcome}")


# --- Active agent modules (per host) -----------------------------------------------------------------


async def activate_agent_modules(work: Work) -> None:
    """Switch the monitoring modules on in the agent's configuration, reload it and check."""
    modules = commands.agent_modules(True)
    host = work.arg.host
    assert host is not None
    async with work.host(host.ip) as client:
        output = await client.run(
            commands.write_reload_and_read(commands.AGENT_MODULES_FILE, work.owner_task_id, len(modules.encode())),
            input=modules,
            what=f"writing {commands.AGENT_MODULES_FILE}, reloading the agent and reading the file back",
        )
    reloaded, written = host_sections(output.stdout, 2, host.ip)
    reload, state = reloaded.strip(), commands.parse_agent_modules(written)
    wrong = [m for m in commands.MONITOR_MODULES if state.get(m) is not True]
    if wrong:
        raise FailedPrecondition(f"agent modules {', '.join(wrong)} did not switch on", node=host.ip)
    work.say(f"{host.ip}: modules {', '.join(commands.MONITOR_MODULES)} on; {reload}")


async def deactivate_agent_modules(work: Work) -> None:
    """Put back the modules file from before the takeover: modules it switched on are off again."""
    host = work.arg.host
    assert host is not None
    if not await asyncio.to_thread(work.holds_host, host.ip):
        work.say(f"{host.ip}: not reserved for this cluster, so nothing was changed there")
        return
    async with work.host(host.ip) as client:
        outcome = await _restore_agent_file(client, commands.AGENT_MODULES_FILE, work.owner_task_id)
    work.say(f"{host.ip}: agent modules file {outcome}")
