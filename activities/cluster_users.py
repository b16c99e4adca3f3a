"""The cluster's users that a takeover creates and keeps: the monitor user (and its CPU limit through the
resource manager) and proxyro, each with its undo next to it. Idempotent, as every subtask."""

from __future__ import annotations

import json

from activities import cluster_sql as sql
from activities import facts
from activities.cluster_records import (
    bound_cluster_credential,
    monitor_credential_name,
    proxyro_credential_name,
    save_cluster_credential,
)
from activities.runtime import Work
from metadb import credentials
from metadb.credentials import CLUSTER


def before_credential_name(work: Work) -> str:
    return f"{monitor_credential_name(work)}:before"


def create_default_user(work: Work) -> None:
    name = monitor_credential_name(work)
    existing = bound_cluster_credential(work, name)
    if existing is None:
        created_before = work.sys.read(facts.user_exists(sql.MONITOR_USER))
        if created_before:
            # Before anything changes: the user's hash and grants, so that a rollback restores them exactly.
            _record_user_before(work)
        # Stored before the user is created, so a retry or the compensation always knows it.
        password = credentials.generate_password()
        save_cluster_credential(
            work, name, sql.MONITOR_USER, password, work.known_cluster_id(), user_existed=created_before
        )
        exists = created_before  # if it was not there a moment ago, CREATE sets the password: no ALTER
    else:
        password = existing.secret
        created_before = existing.user_existed
        exists = True  # an earlier attempt may have created it, with this password or not yet
    work.sys.execute(sql.create_user(sql.MONITOR_USER, password))
    if exists:
        work.sys.execute(sql.alter_user_password(sql.MONITOR_USER, password))
    work.sys.execute(sql.grant("SELECT", "*.*", sql.MONITOR_USER))
    work.say(
        f"monitor user {sql.MONITOR_USER} {'already existed; password reset' if created_before else 'created'}"
        ", SELECT granted, password saved to the password box"
    )


def _record_user_before(work: Work) -> None:
    password = work.sys.read(facts.user_password_hash(sql.MONITOR_USER))
    grants = work.sys.read(facts.grants(sql.MONITOR_USER))
    state = {"password": password, "grants": grants}
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
    exists = work.sys.read(facts.user_exists(sql.PROXYRO_USER))
    work.sys.execute(sql.create_user(sql.PROXYRO_USER, password))
    if exists:  # else CREATE has just set this password
        work.sys.execute(sql.alter_user_password(sql.PROXYRO_USER, password))
    work.sys.execute(sql.grant("SELECT", "oceanbase.*", sql.PROXYRO_USER))
    # Verify: the proxy logs in with exactly this password.
    with work.cluster_as(sql.PROXYRO_USER, password) as client:
        client.read(facts.LOGIN)
    save_cluster_credential(work, proxyro_credential_name(work), sql.PROXYRO_USER, password, work.known_cluster_id())
    source = (
        "the request's proxyroPassword"
        if given
        else f"a password of its own (credential {proxyro_credential_name(work)})"
    )
    work.say(f"proxyro {'updated' if exists else 'created'} with {source}; login verified")


def create_resource_manager(work: Work) -> None:
    state = work.sys.read(facts.resource_manager(sql.RESOURCE_PLAN, sql.CONSUMER_GROUP, sql.MONITOR_USER))
    active = state.active_plan
    plan = active or sql.RESOURCE_PLAN
    if not state.group_exists:
        work.sys.execute(sql.create_consumer_group(sql.CONSUMER_GROUP))
    if not active and not state.plan_exists:
        work.sys.execute(sql.create_plan(plan))
    if not state.directive_exists:
        work.sys.execute(sql.create_plan_directive(plan, sql.CONSUMER_GROUP, sql.MONITOR_UTILIZATION_LIMIT))
    if state.mapped_group != sql.CONSUMER_GROUP:
        work.sys.execute(sql.map_user_to_group(sql.MONITOR_USER, sql.CONSUMER_GROUP))
    if not active:
        work.sys.execute(sql.enable_plan(plan))
    work.say(
        f"{sql.MONITOR_USER} limited to {sql.MONITOR_UTILIZATION_LIMIT}% CPU through group {sql.CONSUMER_GROUP} "
        f"in plan {plan}" + (" (the cluster's active plan)" if active else " (enabled)")
    )


def drop_resource_manager(work: Work) -> None:
    read = work.sys.read
    if read(facts.mapping(sql.MONITOR_USER)) == sql.CONSUMER_GROUP:
        work.sys.execute(sql.map_user_to_group(sql.MONITOR_USER, None))
    for plan in read(facts.directives(sql.CONSUMER_GROUP)):
        work.sys.execute(sql.delete_plan_directive(plan, sql.CONSUMER_GROUP))
    if read(facts.group_exists(sql.CONSUMER_GROUP)):
        work.sys.execute(sql.delete_consumer_group(sql.CONSUMER_GROUP))
    if read(facts.ACTIVE_PLAN) == sql.RESOURCE_PLAN:
        work.sys.execute(sql.enable_plan(""))
    if read(facts.plan_exists(sql.RESOURCE_PLAN)):
        work.sys.execute(sql.delete_plan(sql.RESOURCE_PLAN))
    work.say("resource manager objects of the monitor user removed")
