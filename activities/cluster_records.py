"""What subtasks keep about their cluster, shared by the cluster, host and release subtasks: the task's row in
the task registry, the cluster's own credentials in the password box, its config URL, and undoing a metadb
write of the cluster's."""

from __future__ import annotations

import json
from collections.abc import Callable

from activities import cluster_sql as sql
from activities.runtime import Work
from contracts.engine import config_url_for
from contracts.errors import CredentialMisuse, FailedPrecondition
from contracts.task_view import task_name
from metadb import credentials, tasks
from metadb.credentials import CLUSTER, Credential
from metadb.db import Database


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


def root_credential_name(work: Work) -> str:
    return credentials.cluster_credential_name(work.cluster_key, "root@sys")


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


def monitor_credential_name(work: Work) -> str:
    return credentials.cluster_credential_name(work.cluster_key, sql.MONITOR_USER)


def monitor_password(work: Work) -> str:
    found = bound_cluster_credential(work, monitor_credential_name(work))
    if found is None:
        raise FailedPrecondition(
            f"the password of {sql.MONITOR_USER} is not in the password box; run 'Create default user' first"
        )
    return found.secret


def config_url(work: Work) -> str:
    return config_url_for(work.runtime.public_url, *work.arg.target.name_and_id)


def undo_in_metadb(work: Work, undo: Callable[[Database, int], object], done: str) -> None:
    """A compensation that removes what its subtask recorded under the cluster's record, if there is one."""
    cluster_id = work.known_cluster_id()
    if cluster_id:
        undo(work.db, cluster_id)
    work.say(done)


def proxyro_credential_name(work: Work) -> str:
    return credentials.cluster_credential_name(work.cluster_key, sql.PROXYRO_USER)
