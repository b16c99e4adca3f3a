"""Releasing a cluster from management: what the release adds to the takeover's own compensations.

`ReleaseCluster` undoes a successful takeover with the compensations the takeover's rollback runs, each
acting for the takeover's task (`Work.owner_task_id`): only what that takeover created is removed, only
what it changed is put back. This module adds the release's own subtasks and the lookup that precedes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities import facts
from activities.cluster_records import record_task
from activities.cluster_sql import PROXYRO_USER
from activities.failures import project_activity
from activities.runtime import Runtime, Work
from contracts.errors import CredentialMisuse, FailedPrecondition
from contracts.release import ReleaseRequest, ReleaseTarget
from contracts.stages import DESCRIBE_MANAGED_CLUSTER
from contracts.task_view import RecordedStatus
from metadb import clusters, credentials
from metadb.credentials import CLUSTER
from metadb.managed import describe_managed_cluster


def describe_managed_cluster_activity(runtime: Runtime) -> Callable[..., Any]:
    @project_activity(DESCRIBE_MANAGED_CLUSTER)
    async def run(release: ReleaseRequest) -> ReleaseTarget:
        workflow_id = activity.info().workflow_id or ""
        return await asyncio.to_thread(describe_managed_cluster, runtime.db, release, workflow_id)

    return run


# --- Prepare move out cluster -----------------------------------------------------------------------


def prepare_release(work: Work) -> None:
    """Check that the cluster answering at the recorded endpoint is the managed one, then mark it RELEASING
    (a takeover of it is refused from now on) and record the task."""
    cluster_id = work.cluster_id()
    record = clusters.get_cluster(work.db, cluster_id)
    assert record is not None
    if record["status"] not in (clusters.RUNNING, clusters.RELEASING):
        raise FailedPrecondition(f"cluster {cluster_id} is {record['status']}, not under management")
    answering = f"{work.sys.read(facts.parameter('cluster'))}:{work.sys.read(facts.parameter('cluster_id'))}"
    if answering != work.cluster_key:
        raise CredentialMisuse(
            f"the cluster answering at {work.endpoint.where} is {answering}, not the managed {work.cluster_key}: "
            "nothing was changed; check the cluster's address (`ob-takeover cluster list`)"
        )
    clusters.set_cluster_status(work.db, cluster_id, clusters.RELEASING)
    record_task(work, RecordedStatus.RUNNING, cluster_id)
    work.say(
        f"cluster {work.cluster_key} (cluster {cluster_id}, taken over by task {work.owner_task_id}) is being "
        "moved out of management; its data is not touched"
    )


def resume_management(work: Work) -> None:
    """Undo "Prepare move out cluster": the cluster is managed again."""
    cluster_id = work.known_cluster_id()
    if cluster_id is not None:
        clusters.set_cluster_status(work.db, cluster_id, clusters.RUNNING)
    work.say(f"cluster {cluster_id} is managed again (RUNNING)")


# --- Delete cluster credentials ----------------------------------------------------------------------


def remove_cluster_credentials(work: Work) -> None:
    """Remove the cluster credentials the takeover stored (its own, by name and owner). proxyro stays as it
    is: on the cluster and in the password box (no longer the takeover's), so OBProxy keeps logging in and a
    later takeover keeps the same password; the log says so."""
    prefix = f"{work.cluster_key}:"
    proxyro = credentials.cluster_credential_name(work.cluster_key, PROXYRO_USER)
    kept = credentials.disown_cluster_credential(work.db, proxyro, work.owner_task_id)
    rows = [row for row in credentials.list_credentials(work.db, CLUSTER) if str(row["name"]).startswith(prefix)]
    removed = [
        f"{row['name']} (credential {row['id']})"
        for row in rows
        if row["name"] != proxyro
        and credentials.delete_own_cluster_credential(work.db, str(row["name"]), work.owner_task_id)
    ]
    where = f"; its password stays in the password box as {proxyro} (credential {kept})" if kept else ""
    work.say(
        f"proxyro is left as it is on the cluster{where}: OBProxy keeps logging in with it, and a later takeover "
        "of this cluster keeps the same password"
    )
    work.say(f"credentials the takeover stored removed: {', '.join(removed) or 'none'}")
