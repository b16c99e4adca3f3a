"""The takeover's cluster and metadb subtasks, each with its compensation next to it.

Every function here is idempotent: a subtask that runs twice (retry, crash) leaves the same users,
parameters and rows as one that runs once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from activities import cluster_sql as sql
from activities import facts
from activities.cluster_records import (
    config_url,
    monitor_password,
    record_task,
    root_credential_name,
    save_cluster_credential,
    undo_in_metadb,
)
from activities.precheck import run_checks
from activities.runtime import Work
from contracts.engine import unreachable_config_url
from contracts.errors import ClusterSqlError, FailedPrecondition
from contracts.messages import WARNING, PrecheckInput
from contracts.task_view import RecordedStatus, end_status
from metadb import clusters, credentials, locks

# --- Mc lock ob clusters / Mc unlock ob clusters ---------------------------------------------------


def lock_keys_of(work: Work) -> list[str]:
    target = work.arg.target
    endpoint = target.endpoint
    return locks.lock_keys(endpoint.address, endpoint.port, *target.name_and_id)


def acquire_cluster_lock(work: Work) -> None:
    locks.acquire(work.db, lock_keys_of(work), work.arg.task_id, work.arg.workflow_id, work.arg.target.name_and_id[0])
    record_task(work, RecordedStatus.RUNNING)
    work.say(f"cluster {work.cluster_key} locked by task {work.arg.task_id}")


def release_cluster_lock(work: Work) -> None:
    released = locks.release(work.db, work.arg.workflow_id)
    # The task is over: passwords stored for its time only (the REST API's copies) leave the password box;
    # the cluster's own credentials ("name:id:…") stay.
    dropped = credentials.delete_task_credentials(work.db, work.arg.task_id, keep_prefix=f"{work.cluster_key}:")
    if dropped:
        work.say(f"{dropped} password(s) stored for this task only removed from the password box")
    record_task(work, end_status(work.arg.operation), work.known_cluster_id())
    work.say(f"released {released} lock(s) on cluster {work.cluster_key}" if released else "no lock held")


# --- Prepare take over cluster ------------------------------------------------------------------


async def prepare_takeover(work: Work) -> None:
    """Run the precheck (the same one `TakeOverPrecheck` runs), then record the cluster as TAKINGOVER."""
    report = await run_checks(
        work.runtime,
        PrecheckInput(
            target=work.arg.target, options=work.arg.options, workflow_id=work.arg.workflow_id, task_id=work.arg.task_id
        ),
        known=work.arg.topology,
    )
    warnings = [item for item in report.items if item.status == WARNING]
    for item in warnings:
        work.say(f"precheck WARNING {item.name}{' on ' + item.node if item.node else ''}: {item.message}")
    failures = report.failures()
    if failures:
        raise FailedPrecondition(
            "precheck failed: "
            + "; ".join(f"{i.name}{' on ' + i.node if i.node else ''}: {i.message}" for i in failures)
        )
    work.say(f"precheck passed: {len(report.items)} checks, {len(warnings)} warning(s), {report.seconds:.2f}s")
    await asyncio.to_thread(_record_cluster, work, report.version or "")


def _record_cluster(work: Work, version: str) -> None:
    target = work.arg.target
    cluster_id = clusters.create_cluster_record(
        work.db,
        name=target.name_and_id[0],
        ob_cluster_id=target.name_and_id[1],
        address=target.endpoint.address,
        port=target.endpoint.port,
        connection_mode=target.endpoint.connection_mode,
        version=version,
        task_id=work.arg.task_id,
        cluster_id=target.cluster_id,
    )
    work.context["clusterId"] = str(cluster_id)
    work.say(f"cluster {work.cluster_key} (OceanBase {version}) recorded as cluster {cluster_id}, TAKINGOVER")
    password = target.endpoint.root_sys_password
    if password is None and target.endpoint.credential_id is not None:
        # The starter's copy for this task alone (deleted when the task ends): saved as the cluster's own.
        row = credentials.describe_credential(work.db, credential_id=target.endpoint.credential_id)
        if row is not None and row["created_by_task_id"] == work.arg.task_id:
            password = work.endpoint.root_sys_password
    if work.arg.options.save_to_credential and password is not None:
        save_cluster_credential(work, root_credential_name(work), "root@sys", password, cluster_id)
        work.say("root@sys password saved to the password box")


def remove_cluster_record(work: Work) -> None:
    cluster_id = work.known_cluster_id()
    record = clusters.get_cluster(work.db, cluster_id) if cluster_id is not None else None
    if work.arg.target.owner_task_id and record is not None and record["config_url"]:
        work.say(
            f"WARNING: obconfig_url still points at this service ({record['config_url']}; 'Restore config url' "
            "was skipped): once the record is gone it serves no root service list for this cluster"
        )
    if cluster_id is not None:
        # A takeover removes the record it is creating; a release the one it is releasing.
        status = clusters.RELEASING if work.arg.target.owner_task_id else clusters.TAKINGOVER
        clusters.remove_cluster_record(work.db, cluster_id, status)
    # Only this task's credential: the cluster may be managed here already from an earlier takeover.
    if credentials.delete_own_cluster_credential(work.db, root_credential_name(work), work.owner_task_id):
        work.say("root@sys password this task saved removed from the password box")
    work.say(f"cluster record {cluster_id} removed" if cluster_id else "no cluster record of this task to remove")


# --- Register config url --------------------------------------------------------------------------


def register_config_url(work: Work) -> None:
    if not work.arg.options.switch_config_url:
        work.say("switchConfigUrl is false: obconfig_url left as it is")
        return
    topology = work.arg.topology
    problem = unreachable_config_url(work.runtime.public_url, [s.ip for s in topology.servers] if topology else [])
    if problem:
        raise FailedPrecondition(problem)
    cluster_id = work.cluster_id()
    record = clusters.get_cluster(work.db, cluster_id)
    assert record is not None
    url = config_url(work)
    found = work.sys.read(facts.parameters("obconfig_url", "rootservice_list"))
    # The URL found before the takeover is kept once; a retry sees our own URL and must not keep that.
    previous = record["previous_config_url"] if record["config_url"] else found["obconfig_url"]
    # The config server must know the RS list before the cluster is pointed at it.
    rs_list = sql.rs_list_from_parameter(found["rootservice_list"])
    clusters.set_rs_list(work.db, cluster_id, rs_list)
    clusters.set_config_url(work.db, cluster_id, url, previous)
    work.sys.execute(sql.set_parameter("obconfig_url", url))
    work.sys.execute(sql.RELOAD_SERVER)
    work.say(f"obconfig_url set to {url} (was '{previous}'); {len(rs_list)} root servers registered")


def restore_config_url(work: Work) -> None:
    """Put obconfig_url back as it was before the takeover (a release may name another URL, or none)."""
    cluster_id = work.known_cluster_id()
    record = clusters.get_cluster(work.db, cluster_id) if cluster_id else None
    target = work.arg.config_url
    if record is None or (not record["config_url"] and target is None):
        work.say("obconfig_url was not changed by this takeover")
        return
    previous = record["previous_config_url"] or "" if target is None else target
    work.sys.execute(sql.set_parameter("obconfig_url", previous))
    work.sys.execute(sql.RELOAD_SERVER)
    assert cluster_id is not None
    clusters.set_config_url(work.db, cluster_id, None, None)
    clusters.set_rs_list(work.db, cluster_id, None)
    work.say(f"obconfig_url restored to '{previous}'")


# --- Run io calibration (per server) -------------------------------------------------------------


async def run_io_calibration(work: Work) -> None:
    """Start (or join) the server's io calibration and poll until it is READY. Async: a calibration takes
    minutes on real disks, and a poll holds a worker thread only while its query runs. A later attempt (the
    worker was lost) that finds the calibration an earlier attempt started finished keeps its result."""
    server = work.arg.server
    assert server is not None
    row = await work.read(facts.io_calibration(server))
    earlier = work.progress.get("io_calibration")
    if row.get("STATUS") == "IN PROGRESS":
        work.say(f"io calibration already running on {server.label}; waiting for it")
    elif row.get("STATUS") == "READY" and isinstance(earlier, dict) and _started_since(row, earlier):
        work.say(
            f"io calibration started by an earlier attempt finished READY on {server.label} at "
            f"{row.get('FINISH_TIME')}; its result is kept"
        )
        return
    else:
        await work.query(sql.run_io_calibration(server.ip, server.rpc_port))
        # Recorded once the job is accepted, with the calibration seen before it: a later attempt keeps only a
        # calibration started since (a job that was refused, or never sent, is run again).
        work.keep_progress(io_calibration={"before": _start_time(row), "started": True})
        work.say(f"io calibration started on {server.label}")
    while True:
        await asyncio.sleep(work.runtime.poll_interval)
        status = (await work.read(facts.io_calibration(server))).get("STATUS", "NOT AVAILABLE")
        if status == "READY":
            work.say(f"io calibration READY on {server.label}")
            return
        if status != "IN PROGRESS":
            raise ClusterSqlError(
                f"io calibration ended {status}; check the data disk of the observer and retry",
                node=server.label,
            )


def _start_time(row: dict[str, Any]) -> str | None:
    value = row.get("START_TIME")
    return None if value is None else str(value)


def _started_since(row: dict[str, Any], earlier: dict[str, Any]) -> bool:
    """Whether the calibration in `row` is one started after an earlier attempt recorded `earlier`."""
    started = _start_time(row)
    return bool(earlier.get("started")) and started is not None and started != earlier.get("before")


# --- Record root service list -------------------------------------------------------------------


def record_root_service_list(work: Work) -> None:
    cluster_id = work.cluster_id()
    rs_list = work.sys.read(facts.ROOT_SERVICE)
    if not rs_list:
        rs_list = sql.rs_list_from_parameter(work.sys.read(facts.parameter("rootservice_list")))
    if not rs_list:
        raise FailedPrecondition("the cluster reports no root service; check the sys tenant's log stream 1")
    clusters.set_rs_list(work.db, cluster_id, rs_list)
    leader = next((r["address"] for r in rs_list if r["role"] == "LEADER"), rs_list[0]["address"])
    work.say(f"root service list recorded: {len(rs_list)} servers, leader {leader}")


def remove_root_service_list(work: Work) -> None:
    cluster_id = work.known_cluster_id()
    record = clusters.get_cluster(work.db, cluster_id) if cluster_id else None
    # With the config URL still switched, the config server keeps serving the list it registered.
    if cluster_id and record and not record["config_url"]:
        clusters.set_rs_list(work.db, cluster_id, None)
    work.say("root service list removed")


# --- Wait cluster accessible --------------------------------------------------------------------


async def wait_cluster_accessible(work: Work) -> None:
    """Poll until the monitor user logs in and every server serves. Async, as the io calibration."""
    password = await asyncio.to_thread(monitor_password, work)
    last_problem = ""
    while True:
        try:
            not_ready = await asyncio.to_thread(_servers_not_ready, work, password)
            if not_ready == 0:
                work.say(f"{sql.MONITOR_USER} logs in; every server is ACTIVE with its service started")
                return
            problem = f"{not_ready} server(s) not ACTIVE or not serving yet"
        except Exception as exc:
            problem = str(exc)
        if problem != last_problem:
            work.say(f"waiting: {problem}")
            last_problem = problem
        await asyncio.sleep(work.runtime.poll_interval)


def _servers_not_ready(work: Work, password: str) -> int:
    with work.cluster_as(sql.MONITOR_USER, password) as client:
        return client.read(facts.SERVICE_NOT_READY)


# --- Attach cluster attributes --------------------------------------------------------------------


def attach_cluster_attributes(work: Work) -> None:
    cluster_id = work.cluster_id()
    servers = work.sys.read(facts.SERVERS)
    zones = work.sys.read(facts.ZONES)
    found = work.sys.read(facts.parameters("data_dir", "obconfig_url"))
    process = {
        (row["ip"], row["rpc_port"]): json.loads(row["process_info"])
        for row in clusters.rows_of(work.db, "servers", cluster_id)
        if row["process_info"]
    }
    install_paths = sorted({p["install_path"] for p in process.values() if p.get("install_path")})
    attributes = {
        "version": work.sys.read(facts.OB_VERSION),
        "build_versions": sorted({str(r["BUILD_VERSION"]) for r in servers}),
        "regions": sorted({str(r["REGION"]) for r in zones}),
        "architecture": "distributed" if len(servers) > 1 else "standalone",
        "data_dir": found["data_dir"],
        "install_paths": install_paths,
        "log_dirs": sorted({p["log_dir"] for p in process.values() if p.get("log_dir")}),
        "config_url": found["obconfig_url"],
        "zones": len(zones),
        "servers": len(servers),
    }
    clusters.set_attributes(work.db, cluster_id, attributes)
    work.say(
        f"attributes: OceanBase {attributes['version']}, {attributes['servers']} servers, "
        f"regions {attributes['regions']}"
    )


def detach_cluster_attributes(work: Work) -> None:
    undo_in_metadb(
        work, lambda db, cluster_id: clusters.set_attributes(db, cluster_id, None), "cluster attributes removed"
    )


# --- Sync cluster info / Sync all tenant information ------------------------------------------------


def sync_cluster_info(work: Work) -> None:
    cluster_id = work.cluster_id()
    zones = sql.zone_rows(work.sys.read(facts.ZONES))
    servers = sql.server_rows(work.sys.read(facts.SERVERS))
    clusters.sync_topology(work.db, cluster_id, zones, servers)
    work.say(f"synced {len(zones)} zones and {len(servers)} servers")


def remove_cluster_info(work: Work) -> None:
    undo_in_metadb(work, clusters.clear_topology, "zones and servers removed from the metadb")


def sync_tenant_info(work: Work) -> None:
    cluster_id = work.cluster_id()
    tenants = work.sys.read(facts.TENANTS)
    clusters.sync_tenants(
        work.db,
        cluster_id,
        tenants,
        work.sys.read(facts.UNIT_CONFIGS),
        work.sys.read(facts.POOLS),
        work.sys.read(facts.UNITS),
    )
    work.say(f"synced {len(tenants)} tenants: {', '.join(t['name'] for t in tenants)}")


def remove_tenant_info(work: Work) -> None:
    undo_in_metadb(work, clusters.clear_tenants, "tenants removed from the metadb")


# --- status recording ----------------------------------------------------------------------------


def update_observer_status(work: Work) -> None:
    server = work.arg.server
    assert server is not None
    cluster_id = work.cluster_id()
    status = work.sys.read(facts.server_status(server))
    if status is None:
        raise FailedPrecondition("the server is no longer in DBA_OB_SERVERS", node=server.label)
    clusters.set_server_status(work.db, cluster_id, server.ip, server.rpc_port, status)
    work.say(f"{server.label} is {status}")


def update_zone_status(work: Work) -> None:
    zone = work.arg.zone
    assert zone is not None
    cluster_id = work.cluster_id()
    status = work.sys.read(facts.zone_status(zone.name))
    if status is None:
        raise FailedPrecondition("the zone is no longer in DBA_OB_ZONES", node=zone.name)
    clusters.set_zone_status(work.db, cluster_id, zone.name, status)
    work.say(f"zone {zone.name} is {status}")


def update_cluster_status(work: Work) -> None:
    cluster_id = work.cluster_id()
    clusters.set_cluster_status(work.db, cluster_id, clusters.RUNNING)
    work.say(f"cluster {work.cluster_key} is RUNNING under management")
