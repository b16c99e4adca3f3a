"""The takeover's cluster and metadb subtasks, each with its compensation next to it.

Every function here is idempotent: a subtask that runs twice (retry, crash) leaves the same users,
parameters and rows as one that runs once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from activities import cluster_sql as sql
from activities.facts import read_parameter
from activities.precheck import run_checks
from activities.runtime import Work
from contracts.engine import config_url_for, unreachable_config_url
from contracts.errors import ClusterSqlError, CredentialMisuse, FailedPrecondition
from contracts.messages import WARNING, PrecheckInput
from contracts.task_view import task_name
from metadb import clusters, credentials, locks, tasks
from metadb.credentials import CLUSTER, Credential
from metadb.db import Database

# --- Mc lock ob clusters / Mc unlock ob clusters ---------------------------------------------------


def lock_keys_of(work: Work) -> list[str]:
    target = work.arg.target
    endpoint = target.endpoint
    return locks.lock_keys(endpoint.address, endpoint.port, *target.name_and_id)


def record_task(work: Work, status: str, cluster_id: int | None = None) -> None:
    """The task's row in the metadb's task registry (its name is kept when this subtask lacks the topology)."""
    topology = work.arg.topology
    tasks.record_task(
        work.db,
        task_id=work.arg.task_id,
        workflow_id=work.arg.workflow_id,
        run_id=work.run_id,
        name=work.arg.task_name or (task_name(topology.standby) if topology else None),
        status=status,
        cluster_id=cluster_id,
    )


def acquire_cluster_lock(work: Work) -> None:
    locks.acquire(work.db, lock_keys_of(work), work.arg.task_id, work.arg.workflow_id, work.arg.target.name_and_id[0])
    record_task(work, "RUNNING")
    work.say(f"cluster {work.cluster_key} locked by task {work.arg.task_id}")


def release_cluster_lock(work: Work) -> None:
    released = locks.release(work.db, work.arg.workflow_id)
    # The task is over: passwords stored for its time only (the REST API's copies) leave the password box;
    # the cluster's own credentials ("name:id:…") stay.
    dropped = credentials.delete_task_credentials(work.db, work.arg.task_id, keep_prefix=f"{work.cluster_key}:")
    if dropped:
        work.say(f"{dropped} password(s) stored for this task only removed from the password box")
    status = {"EXECUTE": "SUCCESSFUL", "RETRY": "SUCCESSFUL", "ROLLBACK": "ROLLED_BACK", "CANCEL": "ABORTED"}
    record_task(work, status.get(work.arg.operation, work.arg.operation), work.known_cluster_id())
    work.say(f"released {released} lock(s) on cluster {work.cluster_key}" if released else "no lock held")


# --- Prepare take over cluster ------------------------------------------------------------------


def root_credential_name(work: Work) -> str:
    return credentials.cluster_credential_name(work.cluster_key, "root@sys")


async def prepare_takeover(work: Work) -> None:
    """Run the precheck (the same one `TakeOverPrecheck` runs), then record the cluster as TAKINGOVER."""
    report = await run_checks(
        work.runtime,
        PrecheckInput(
            target=work.arg.target, options=work.arg.options, workflow_id=work.arg.workflow_id, task_id=work.arg.task_id
        ),
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


def save_cluster_credential(
    work: Work, name: str, username: str, secret: str, cluster_id: int | None, user_existed: bool | None = None
) -> int:
    """A cluster credential owned by this task, usable only at the request's endpoint and for this cluster.
    One of the same name stored for another endpoint is not replaced: a server elsewhere that reports this
    cluster's name and id must not take over its credentials."""
    endpoint = work.arg.target.where
    existing = credentials.describe_credential(work.db, kind=CLUSTER, name=name)
    if existing is not None and endpoint not in json.loads(existing["endpoints"] or "[]"):
        raise CredentialMisuse(
            f"the password box holds {name} for another endpoint (credential {existing['id']}, stored by task "
            f"{existing['created_by_task_id']}): the server at {endpoint} reports a cluster name and id that "
            "another endpoint holds; check which one is the real cluster"
        )
    # A credential someone else stored under this name (an operator, an earlier takeover) stays theirs: this
    # task's rollback or a release must not delete it.
    owner = work.arg.task_id if existing is None else existing["created_by_task_id"]
    return credentials.save_credential(
        work.db,
        work.vault,
        kind=CLUSTER,
        name=name,
        username=username,
        secret=secret,
        cluster_id=cluster_id,
        created_by_task_id=owner,
        endpoints=[endpoint],
        bound_cluster=work.cluster_key,
        user_existed=user_existed,
    )


def bound_cluster_credential(work: Work, name: str) -> Credential | None:
    """The cluster credential `name`, refused if it is not bound to this endpoint and cluster."""
    found = credentials.find_credential(work.db, work.vault, CLUSTER, name)
    if found is not None:
        work.runtime.credentials.check_binding(found, work.arg.target.endpoint, work.cluster_key)
    return found


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


# --- Create default user ------------------------------------------------------------------------


def monitor_credential_name(work: Work) -> str:
    return credentials.cluster_credential_name(work.cluster_key, sql.MONITOR_USER)


def monitor_password(work: Work) -> str:
    found = bound_cluster_credential(work, monitor_credential_name(work))
    if found is None:
        raise FailedPrecondition(
            f"the password of {sql.MONITOR_USER} is not in the password box; run 'Create default user' first"
        )
    return found.secret


def before_credential_name(work: Work) -> str:
    return f"{monitor_credential_name(work)}:before"


def create_default_user(work: Work) -> None:
    name = monitor_credential_name(work)
    existing = bound_cluster_credential(work, name)
    if existing is None:
        created_before = bool(work.sys.query(sql.user_exists(sql.MONITOR_USER)))
        if created_before:
            # Before anything changes: the user's hash and grants, so that a rollback restores them exactly.
            _record_user_before(work)
        # Stored before the user is created, so a retry or the compensation always knows it.
        password = credentials.generate_password()
        save_cluster_credential(
            work, name, sql.MONITOR_USER, password, work.known_cluster_id(), user_existed=created_before
        )
    else:
        password = existing.secret
        created_before = existing.user_existed
    work.sys.execute(sql.create_user(sql.MONITOR_USER, password))
    work.sys.execute(sql.alter_user_password(sql.MONITOR_USER, password))
    work.sys.execute(sql.grant("SELECT", "*.*", sql.MONITOR_USER))
    work.say(
        f"monitor user {sql.MONITOR_USER} {'already existed; password reset' if created_before else 'created'}"
        ", SELECT granted, password saved to the password box"
    )


def _record_user_before(work: Work) -> None:
    rows = work.sys.query(sql.user_password_hash(sql.MONITOR_USER))
    grants = [str(next(iter(row.values()))) for row in work.sys.query(sql.show_grants(sql.MONITOR_USER))]
    state = {"password": str(rows[0]["PASSWORD"] or "") if rows else "", "grants": grants}
    save_cluster_credential(
        work, before_credential_name(work), sql.MONITOR_USER, json.dumps(state), work.known_cluster_id(), True
    )
    work.say(f"{sql.MONITOR_USER} exists: its password hash and {len(grants)} grant line(s) kept for a rollback")


def drop_default_user(work: Work) -> None:
    name = monitor_credential_name(work)
    row = credentials.describe_credential(work.db, kind=CLUSTER, name=name)
    if row is None or row["created_by_task_id"] != work.owner_task_id:
        # Not this task's: another takeover's monitor user and password stay as they are.
        work.say(f"no {sql.MONITOR_USER} password from this task: user and password box left as they are")
        return
    if row["user_existed"]:
        _restore_user_before(work)
    else:
        work.sys.execute(sql.drop_user(sql.MONITOR_USER))
        work.say(f"monitor user {sql.MONITOR_USER} dropped")
    credentials.delete_own_cluster_credential(work.db, name, work.owner_task_id)


def _restore_user_before(work: Work) -> None:
    """Put the monitor user back as the takeover found it: the same password hash, the same grants."""
    before = bound_cluster_credential(work, before_credential_name(work))
    if before is None or before.created_by_task_id != work.owner_task_id:
        work.say(
            f"monitor user {sql.MONITOR_USER} existed before the takeover; its earlier state was not recorded: kept"
        )
        return
    state = json.loads(before.secret)
    grants = sql.grants_from_show(state["grants"], sql.MONITOR_USER)
    # Dropped and created again: only CREATE USER takes a hash as it is. A retry finds it dropped or back.
    work.sys.execute(sql.drop_user(sql.MONITOR_USER))
    work.sys.execute(sql.create_user_with_hash(sql.MONITOR_USER, state["password"]))
    for statement in grants:
        work.sys.execute(statement)
    credentials.delete_own_cluster_credential(work.db, before.name, work.owner_task_id)
    work.say(
        f"monitor user {sql.MONITOR_USER} restored as before the takeover: its password hash and "
        f"{len(grants)} grant statement(s)"
    )


# --- Register config url --------------------------------------------------------------------------


def config_url(work: Work) -> str:
    return config_url_for(work.runtime.public_url, *work.arg.target.name_and_id)


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
    current = read_parameter(work.sys, "obconfig_url")
    # The URL found before the takeover is kept once; a retry sees our own URL and must not keep that.
    previous = record["previous_config_url"] if record["config_url"] else current
    # The config server must know the RS list before the cluster is pointed at it.
    rs_list = sql.rs_list_from_parameter(read_parameter(work.sys, "rootservice_list"))
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
    status_sql = sql.io_calibration_status(server.ip, server.rpc_port)
    rows = await work.query(status_sql)
    row = rows[0] if rows else {}
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
        rows = await work.query(status_sql)
        status = rows[0]["STATUS"] if rows else "NOT AVAILABLE"
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
    rs_list = sql.rs_list_from_locations(work.sys.query(sql.RS_LIST_SQL))
    if not rs_list:
        rs_list = sql.rs_list_from_parameter(read_parameter(work.sys, "rootservice_list"))
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
        return int(client.query(sql.SERVICE_NOT_READY_SQL)[0]["NOT_READY"])


# --- Attach cluster attributes --------------------------------------------------------------------


def attach_cluster_attributes(work: Work) -> None:
    cluster_id = work.cluster_id()
    servers = work.sys.query(sql.SERVERS_SQL)
    zones = work.sys.query(sql.ZONES_SQL)
    process = {
        (row["ip"], row["rpc_port"]): json.loads(row["process_info"])
        for row in clusters.rows_of(work.db, "servers", cluster_id)
        if row["process_info"]
    }
    install_paths = sorted({p["install_path"] for p in process.values() if p.get("install_path")})
    attributes = {
        "version": work.sys.query(sql.OB_VERSION_SQL)[0]["VERSION"],
        "build_versions": sorted({str(r["BUILD_VERSION"]) for r in servers}),
        "regions": sorted({str(r["REGION"]) for r in zones}),
        "architecture": "distributed" if len(servers) > 1 else "standalone",
        "data_dir": read_parameter(work.sys, "data_dir"),
        "install_paths": install_paths,
        "log_dirs": sorted({p["log_dir"] for p in process.values() if p.get("log_dir")}),
        "config_url": read_parameter(work.sys, "obconfig_url"),
        "zones": len(zones),
        "servers": len(servers),
    }
    clusters.set_attributes(work.db, cluster_id, attributes)
    work.say(
        f"attributes: OceanBase {attributes['version']}, {attributes['servers']} servers, "
        f"regions {attributes['regions']}"
    )


def undo_in_metadb(work: Work, undo: Callable[[Database, int], object], done: str) -> None:
    """A compensation that removes what its subtask recorded under the cluster's record, if there is one."""
    cluster_id = work.known_cluster_id()
    if cluster_id:
        undo(work.db, cluster_id)
    work.say(done)


def detach_cluster_attributes(work: Work) -> None:
    undo_in_metadb(
        work, lambda db, cluster_id: clusters.set_attributes(db, cluster_id, None), "cluster attributes removed"
    )


# --- Sync cluster info / Sync all tenant information ------------------------------------------------


def sync_cluster_info(work: Work) -> None:
    cluster_id = work.cluster_id()
    zones = sql.zone_rows(work.sys.query(sql.ZONES_SQL))
    servers = sql.server_rows(work.sys.query(sql.SERVERS_SQL))
    clusters.sync_topology(work.db, cluster_id, zones, servers)
    work.say(f"synced {len(zones)} zones and {len(servers)} servers")


def remove_cluster_info(work: Work) -> None:
    undo_in_metadb(work, clusters.clear_topology, "zones and servers removed from the metadb")


def sync_tenant_info(work: Work) -> None:
    cluster_id = work.cluster_id()
    tenants = sql.tenant_rows(work.sys.query(sql.TENANTS_SQL))
    clusters.sync_tenants(
        work.db,
        cluster_id,
        tenants,
        sql.unit_config_rows(work.sys.query(sql.UNIT_CONFIGS_SQL)),
        sql.pool_rows(work.sys.query(sql.POOLS_SQL)),
        sql.unit_rows(work.sys.query(sql.UNITS_SQL)),
    )
    work.say(f"synced {len(tenants)} tenants: {', '.join(t['name'] for t in tenants)}")


def remove_tenant_info(work: Work) -> None:
    undo_in_metadb(work, clusters.clear_tenants, "tenants removed from the metadb")


# --- Set proxyro password to sys tenant (cannot be undone) -------------------------------------------


def proxyro_credential_name(work: Work) -> str:
    return credentials.cluster_credential_name(work.cluster_key, sql.PROXYRO_USER)


def set_proxyro_password(work: Work) -> None:
    """proxyro with the request's password, or with one generated for this cluster alone (stored, bound to
    it, before it is used, so a retry sends the same): no password of another cluster is ever sent here."""
    given = work.runtime.credentials.proxyro_password(work.arg.target, work.cluster_key)
    if given is not None:
        password = given
    else:
        stored = bound_cluster_credential(work, proxyro_credential_name(work))
        password = stored.secret if stored is not None else credentials.generate_password()
        if stored is None:
            save_cluster_credential(
                work, proxyro_credential_name(work), sql.PROXYRO_USER, password, work.known_cluster_id()
            )
    exists = bool(work.sys.query(sql.user_exists(sql.PROXYRO_USER)))
    work.sys.execute(sql.create_user(sql.PROXYRO_USER, password))
    work.sys.execute(sql.alter_user_password(sql.PROXYRO_USER, password))
    work.sys.execute(sql.grant("SELECT", "oceanbase.*", sql.PROXYRO_USER))
    # Verify: the proxy logs in with exactly this password.
    with work.cluster_as(sql.PROXYRO_USER, password) as client:
        client.query(sql.LOGIN_CHECK_SQL)
    save_cluster_credential(work, proxyro_credential_name(work), sql.PROXYRO_USER, password, work.known_cluster_id())
    source = (
        "the request's proxyroPassword"
        if given
        else f"a password of its own (credential {proxyro_credential_name(work)})"
    )
    work.say(f"proxyro {'updated' if exists else 'created'} with {source}; login verified")


# --- status recording ----------------------------------------------------------------------------


def update_observer_status(work: Work) -> None:
    server = work.arg.server
    assert server is not None
    cluster_id = work.cluster_id()
    rows = work.sys.query(sql.server_status(server.ip, server.rpc_port))
    if not rows:
        raise FailedPrecondition("the server is no longer in DBA_OB_SERVERS", node=server.label)
    clusters.set_server_status(work.db, cluster_id, server.ip, server.rpc_port, str(rows[0]["STATUS"]))
    work.say(f"{server.label} is {rows[0]['STATUS']}")


def update_zone_status(work: Work) -> None:
    zone = work.arg.zone
    assert zone is not None
    cluster_id = work.cluster_id()
    rows = work.sys.query(sql.zone_status(zone.name))
    if not rows:
        raise FailedPrecondition("the zone is no longer in DBA_OB_ZONES", node=zone.name)
    clusters.set_zone_status(work.db, cluster_id, zone.name, str(rows[0]["STATUS"]))
    work.say(f"zone {zone.name} is {rows[0]['STATUS']}")


def update_cluster_status(work: Work) -> None:
    cluster_id = work.cluster_id()
    clusters.set_cluster_status(work.db, cluster_id, clusters.RUNNING)
    work.say(f"cluster {work.cluster_key} is RUNNING under management")


# --- Create resource manager for default user -------------------------------------------------------


def create_resource_manager(work: Work) -> None:
    q = work.sys.query
    active = str(q(sql.ACTIVE_PLAN_SQL)[0]["PLAN"] or "")
    plan = active or sql.RESOURCE_PLAN
    if not q(sql.GROUP_EXISTS_SQL.format(group=sql.quote(sql.CONSUMER_GROUP))):
        work.sys.execute(sql.create_consumer_group(sql.CONSUMER_GROUP))
    if not active and not q(sql.PLAN_EXISTS_SQL.format(plan=sql.quote(plan))):
        work.sys.execute(sql.create_plan(plan))
    directives = q(sql.DIRECTIVES_SQL.format(group=sql.quote(sql.CONSUMER_GROUP)))
    if not any(d["PLAN"] == plan for d in directives):
        work.sys.execute(sql.create_plan_directive(plan, sql.CONSUMER_GROUP, sql.MONITOR_UTILIZATION_LIMIT))
    mapping = q(sql.MAPPING_SQL.format(user=sql.quote(sql.MONITOR_USER)))
    if not mapping or mapping[0]["CONSUMER_GROUP"] != sql.CONSUMER_GROUP:
        work.sys.execute(sql.map_user_to_group(sql.MONITOR_USER, sql.CONSUMER_GROUP))
    if not active:
        work.sys.execute(sql.enable_plan(plan))
    work.say(
        f"{sql.MONITOR_USER} limited to {sql.MONITOR_UTILIZATION_LIMIT}% CPU through group {sql.CONSUMER_GROUP} "
        f"in plan {plan}" + (" (the cluster's active plan)" if active else " (enabled)")
    )


def drop_resource_manager(work: Work) -> None:
    q = work.sys.query
    mapping = q(sql.MAPPING_SQL.format(user=sql.quote(sql.MONITOR_USER)))
    if mapping and mapping[0]["CONSUMER_GROUP"] == sql.CONSUMER_GROUP:
        work.sys.execute(sql.map_user_to_group(sql.MONITOR_USER, None))
    for directive in q(sql.DIRECTIVES_SQL.format(group=sql.quote(sql.CONSUMER_GROUP))):
        work.sys.execute(sql.delete_plan_directive(str(directive["PLAN"]), sql.CONSUMER_GROUP))
    if q(sql.GROUP_EXISTS_SQL.format(group=sql.quote(sql.CONSUMER_GROUP))):
        work.sys.execute(sql.delete_consumer_group(sql.CONSUMER_GROUP))
    if str(q(sql.ACTIVE_PLAN_SQL)[0]["PLAN"] or "") == sql.RESOURCE_PLAN:
        work.sys.execute(sql.enable_plan(""))
    if q(sql.PLAN_EXISTS_SQL.format(plan=sql.quote(sql.RESOURCE_PLAN))):
        work.sys.execute(sql.delete_plan(sql.RESOURCE_PLAN))
    work.say("resource manager objects of the monitor user removed")
