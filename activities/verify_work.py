"""Verifying a managed cluster: what the cluster and its hosts show now, against what the takeover left.

Read-only: the cluster is read through the facts layer (as the precheck and the subtasks read it) and the
hosts with `cat` of the agent's files (the files the takeover's subtasks write); nothing is created, not
even a missing agent key, and a host whose key changed is reported, never accepted. Each finding names the
takeover subtask that puts it right (`contracts.stages.REPAIRABLE_STAGES`; a server that joined, its
adoption, `ADOPT_SERVER`), or none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from activities import facts
from activities import host_commands as commands
from activities.cluster_records import monitor_password
from activities.cluster_sql import MONITOR_USER
from activities.failures import project_activity
from activities.host_work import agent_inputs, host_sections, same_agent_config
from activities.metrics import record_verification
from activities.ports import HostPort
from activities.runtime import Runtime, Work
from contracts.errors import (
    BadCredentials,
    FailedPrecondition,
    HostKeyMismatch,
    HostKeysUnknown,
    TakeoverError,
)
from contracts.messages import SubtaskInput
from contracts.release import ReleaseTarget
from contracts.stages import ADOPT_SERVER, DESCRIBE_VERIFY_TARGET, SUBTASKS, VERIFY_MANAGED_CLUSTER
from contracts.topology import HostNode, ServerNode
from contracts.verification import DriftKind, Finding, VerificationReport, VerifyInput, VerifyRequest
from metadb import clusters, hosts, verifications
from metadb.managed import describe_verify_target

_STAGE_NAMES = {stage.activity: stage.name for stage in SUBTASKS}
CREATE_DEFAULT_USER = _STAGE_NAMES["create_default_user"]
REGISTER_CONFIG_URL = _STAGE_NAMES["register_config_url"]
REFRESH_AGENT_CONFIG = _STAGE_NAMES["refresh_agent_config"]
ACTIVATE_AGENT_MODULES = _STAGE_NAMES["activate_agent_modules"]
STORED_PASSWORD = "the password stored by the takeover"


def describe_verify_target_activity(runtime: Runtime) -> Callable[..., Any]:
    @project_activity(DESCRIBE_VERIFY_TARGET)
    async def run(request: VerifyRequest) -> ReleaseTarget:
        return await asyncio.to_thread(describe_verify_target, runtime.db, request.cluster_id)

    return run


def verify_managed_cluster_activity(runtime: Runtime) -> Callable[..., Any]:
    @project_activity(VERIFY_MANAGED_CLUSTER)
    async def run(arg: VerifyInput) -> VerificationReport:
        report = await verify_managed_cluster(runtime, arg.managed, activity.info().workflow_id or "")
        record_verification(report.cluster_name, [finding.kind.value for finding in report.findings], time.time())
        return report

    return run


async def verify_managed_cluster(runtime: Runtime, managed: ReleaseTarget, workflow_id: str) -> VerificationReport:
    """Read the cluster and every host it was taken over with, compare with the metadb, keep the report as
    the cluster's latest and return it."""
    began = time.monotonic()
    checked_at = datetime.now(UTC).isoformat(timespec="seconds")
    work = _reading_work(runtime, managed, workflow_id)
    findings = await asyncio.to_thread(_cluster_findings, work, managed)
    per_host = await asyncio.gather(*(_host_findings(work, managed, host) for host in managed.topology.hosts))
    for found in per_host:
        findings.extend(found)
    report = VerificationReport(
        cluster_id=managed.cluster_id,
        cluster_name=managed.topology.cluster_name,
        checked_at=checked_at,
        seconds=round(time.monotonic() - began, 3),
        findings=findings,
    )
    await asyncio.to_thread(
        verifications.save_report,
        runtime.db,
        managed.cluster_id,
        checked_at,
        len(findings),
        report.model_dump(mode="json"),
    )
    return report


def _reading_work(runtime: Runtime, managed: ReleaseTarget, workflow_id: str, host: HostNode | None = None) -> Work:
    """A `Work` acting for the takeover's task, for the helpers the subtasks share (passwords, the agent
    configuration they would write); it runs no subtask."""
    arg = SubtaskInput(
        task_id=managed.owner_task_id,
        subtask_id=0,
        subtask_name="Verify managed cluster",
        workflow_id=workflow_id,
        operation="EXECUTE",
        target=managed.target,
        topology=managed.topology,
        host=host,
        context={"clusterId": str(managed.cluster_id)},
    )
    return Work(arg=arg, runtime=runtime)


# --- the cluster ---------------------------------------------------------------------------------------


def _cluster_findings(work: Work, managed: ReleaseTarget) -> list[Finding]:
    where = managed.target.where
    try:
        live = facts.read_cluster_facts(work.sys)
        zones = work.sys.read(facts.ZONES)
        monitor_exists = work.sys.read(facts.user_exists(MONITOR_USER))
    except TakeoverError as exc:
        expected = f"the sys tenant answers at {where}"
        return [Finding(kind=DriftKind.CLUSTER_UNREACHABLE, expected=expected, found=str(exc))]
    finally:
        work.close()
    recorded = managed.topology
    if (live.topology.cluster_name, live.topology.ob_cluster_id) != (recorded.cluster_name, recorded.ob_cluster_id):
        return [
            Finding(
                kind=DriftKind.CLUSTER_UNREACHABLE,
                expected=f"cluster {managed.target.key} answers at {where}",
                found=f"cluster {live.topology.cluster_name}:{live.topology.ob_cluster_id} answers there",
            )
        ]
    findings = _server_findings(managed, live.servers)
    findings += [
        Finding(kind=DriftKind.ZONE_NOT_ACTIVE, node=str(row["ZONE"]), expected="ACTIVE", found=str(row["STATUS"]))
        for row in zones
        if row["STATUS"] != "ACTIVE"
    ]
    record = clusters.get_cluster(work.db, managed.cluster_id)
    expected_url = record["config_url"] if record else None
    # A takeover with switchConfigUrl false left obconfig_url alone: nothing to compare.
    if expected_url and live.config_url != expected_url:
        findings.append(
            Finding(
                kind=DriftKind.CONFIG_URL_CHANGED,
                expected=expected_url,
                found=live.config_url or "(empty)",
                repair=REGISTER_CONFIG_URL,
            )
        )
    findings += _monitor_findings(work, monitor_exists)
    return findings


def _server_findings(managed: ReleaseTarget, rows: list[dict[str, Any]]) -> list[Finding]:
    recorded = {server.label: server for server in managed.topology.servers}
    live = {f"{row['SVR_IP']}:{row['SVR_PORT']}": row for row in rows}
    findings = [
        Finding(
            kind=DriftKind.SERVER_REMOVED,
            node=label,
            expected=f"in zone {server.zone}, as the takeover recorded it",
            found="not in DBA_OB_SERVERS",
        )
        for label, server in recorded.items()
        if label not in live
    ]
    findings += [
        Finding(
            kind=DriftKind.SERVER_ADDED,
            node=label,
            expected="not managed (the takeover did not see it)",
            found=f"in zone {row['ZONE']}, {row['STATUS']}",
            repair=ADOPT_SERVER,
            server=ServerNode(
                ip=str(row["SVR_IP"]),
                rpc_port=int(row["SVR_PORT"]),
                sql_port=int(row["SQL_PORT"]),
                zone=str(row["ZONE"]),
            ),
        )
        for label, row in live.items()
        if label not in recorded
    ]
    findings += [
        Finding(
            kind=DriftKind.SERVER_NOT_ACTIVE,
            node=label,
            expected="ACTIVE, serving",
            found=str(row["STATUS"]) if row["STATUS"] != "ACTIVE" else "ACTIVE, stopped or not serving",
        )
        for label, row in live.items()
        if label in recorded and not facts.server_serving(row)
    ]
    return findings


def _monitor_findings(work: Work, exists: bool) -> list[Finding]:
    if not exists:
        return [
            Finding(
                kind=DriftKind.MONITOR_USER_MISSING,
                expected=f"{MONITOR_USER} with {STORED_PASSWORD}",
                found=f"no user {MONITOR_USER}",
                repair=CREATE_DEFAULT_USER,
            )
        ]
    try:
        password = monitor_password(work)
    except FailedPrecondition:
        return [
            Finding(
                kind=DriftKind.MONITOR_PASSWORD_CHANGED,
                expected=f"{STORED_PASSWORD} in the password box",
                found="no password of it in the password box",
            )
        ]
    try:
        with work.cluster_as(MONITOR_USER, password) as client:
            client.read(facts.LOGIN)
    except BadCredentials:
        return [
            Finding(
                kind=DriftKind.MONITOR_PASSWORD_CHANGED,
                expected=f"{MONITOR_USER} logs in with {STORED_PASSWORD}",
                found="another password (the login is refused)",
                repair=CREATE_DEFAULT_USER,
            )
        ]
    return []


# --- the hosts -----------------------------------------------------------------------------------------


async def _host_findings(work: Work, managed: ReleaseTarget, host: HostNode) -> list[Finding]:
    ip = host.ip
    try:
        port = await asyncio.to_thread(_open_host, work, managed.cluster_id, ip)
        async with port as client:
            files = ("agent.key", commands.AGENT_CONFIG_FILE, commands.AGENT_MODULES_FILE)
            output = (await client.run(commands.read_agent_files(*files))).stdout
    except (HostKeyMismatch, HostKeysUnknown) as exc:
        return [
            Finding(
                kind=DriftKind.HOST_KEY_CHANGED,
                node=ip,
                expected="the host key known for it",
                found=f"{exc}; check the host before its new key is trusted (`ob-takeover host forget-key`)",
            )
        ]
    except TakeoverError as exc:
        return [Finding(kind=DriftKind.HOST_UNREACHABLE, node=ip, expected="reachable over SSH", found=str(exc))]
    key, current, modules = host_sections(output, 3, ip)
    findings = []
    host_work = _reading_work(work.runtime, managed, work.arg.workflow_id, host)
    servers, password = await asyncio.to_thread(agent_inputs, host_work, ip)
    if not current.strip():
        found = f"{commands.AGENT_CONFIG_FILE} missing"
    elif not key.strip() or not same_agent_config(current, key, password, host_work, servers):
        found = f"{commands.AGENT_CONFIG_FILE} differs from what the takeover wrote"
    else:
        found = ""
    if found:
        findings.append(
            Finding(
                kind=DriftKind.AGENT_CONFIG_CHANGED,
                node=ip,
                expected=f"{commands.AGENT_CONFIG_FILE} for {len(servers)} observer(s) with {STORED_PASSWORD}",
                found=found,
                repair=REFRESH_AGENT_CONFIG,
            )
        )
    state = commands.parse_agent_modules(modules)
    off = [module for module in commands.MONITOR_MODULES if state.get(module) is not True]
    if off:
        findings.append(
            Finding(
                kind=DriftKind.AGENT_MODULES_INACTIVE,
                node=ip,
                expected=f"modules {', '.join(commands.MONITOR_MODULES)} on",
                found=f"{', '.join(off)} off" if modules.strip() else f"{commands.AGENT_MODULES_FILE} missing",
                repair=ACTIVATE_AGENT_MODULES,
            )
        )
    return findings


def _open_host(work: Work, cluster_id: int, ip: str) -> HostPort:
    """A session on a host the cluster holds, its key checked against the known one and never recorded."""
    row = hosts.find_host(work.db, ip)
    if row is None or row["reserved_by_cluster_id"] != cluster_id:
        raise FailedPrecondition("the host is no longer reserved for this cluster in the metadb", node=ip)
    return work.runtime.host(
        ip,
        ssh_port=int(row["ssh_port"]),
        credential_id=int(row["credential_id"]),
        recorded_key=row.get("host_key"),
        remember_key=False,
    )
