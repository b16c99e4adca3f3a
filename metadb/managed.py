"""What the metadb knows of a managed cluster that is to leave management: the release's target."""

from __future__ import annotations

import json
from typing import Any

from contracts.endpoints import endpoint_key
from contracts.engine import release_workflow_id_for
from contracts.errors import FailedPrecondition
from contracts.release import ReleaseRequest, ReleaseTarget
from contracts.target import ClusterTarget
from contracts.topology import ClusterEndpoint, ServerNode, Topology, ZoneNode
from metadb import clusters, credentials
from metadb.credentials import CLUSTER
from metadb.db import Database


def describe_managed_cluster(db: Database, release: ReleaseRequest, workflow_id: str) -> ReleaseTarget:
    """The cluster to release as the metadb records it; refused unless a takeover brought it into management
    and finished, and unless `workflow_id` is the one release of this cluster may run under."""
    record = _managed_record(db, release.cluster_id, (clusters.RUNNING, clusters.RELEASING))
    expected = release_workflow_id_for(record["address"], int(record["port"]))
    if workflow_id != expected:
        raise FailedPrecondition(f"a release of cluster {release.cluster_id} runs as workflow {expected}")
    return _managed_target(db, record, release.cluster_id, release.root_sys_credential_id)


def describe_verify_target(db: Database, cluster_id: int) -> ReleaseTarget:
    """A managed cluster (RUNNING: its takeover finished, no release has begun) as the metadb records it, with
    the root@sys password its takeover kept, for a verification and its repair."""
    record = _managed_record(db, cluster_id, (clusters.RUNNING,))
    return _managed_target(db, record, cluster_id, None)


def _managed_record(db: Database, cluster_id: int, statuses: tuple[str, ...]) -> dict[str, Any]:
    record = clusters.get_cluster(db, cluster_id)
    if record is None:
        raise FailedPrecondition(f"no managed cluster {cluster_id}; `ob-takeover cluster list` lists them")
    if record["status"] not in statuses:
        raise FailedPrecondition(
            f"cluster {cluster_id} is {record['status']}: its release has begun"
            if record["status"] == clusters.RELEASING
            else f"cluster {cluster_id} is {record['status']}: its takeover has not finished; let it finish "
            "or roll it back first"
        )
    return record


def _managed_target(db: Database, record: dict[str, Any], cluster_id: int, credential_id: int | None) -> ReleaseTarget:
    key = f"{record['name']}:{record['ob_cluster_id']}"
    if credential_id is None:
        saved = credentials.describe_credential(
            db, kind=CLUSTER, name=credentials.cluster_credential_name(key, "root@sys")
        ) or _bound_root_credential(db, key, endpoint_key(record["address"], int(record["port"])))
        if saved is None:
            raise FailedPrecondition(
                f"cluster {cluster_id}'s root@sys password is not in the password box (neither saved by its "
                "takeover nor bound to it): store it with `ob-takeover credential add-cluster --endpoint …` and "
                "give its id as rootSysCredentialId"
            )
        credential_id = int(saved["id"])
    proxy = record["connection_mode"] == "proxy"
    endpoint = ClusterEndpoint(
        address=record["address"],
        port=int(record["port"]),
        connection_mode=record["connection_mode"],
        credential_id=credential_id,
        # Through OBProxy the login names the cluster.
        cluster_name=record["name"] if proxy else None,
        ob_cluster_id=int(record["ob_cluster_id"]) if proxy else None,
    )
    servers = clusters.rows_of(db, "servers", cluster_id)
    zones = clusters.rows_of(db, "zones", cluster_id)
    topology = Topology(
        cluster_name=record["name"],
        ob_cluster_id=int(record["ob_cluster_id"]),
        version=record["version"],
        servers=[
            ServerNode(ip=r["ip"], rpc_port=int(r["rpc_port"]), sql_port=int(r["sql_port"]), zone=r["zone"])
            for r in sorted(servers, key=lambda r: (r["zone"], r["ip"], int(r["rpc_port"])))
        ],
        zones=[
            ZoneNode(name=r["name"], region=r["region"], idc=r["idc"]) for r in sorted(zones, key=lambda r: r["name"])
        ],
    )
    owner_task_id = int(record["task_id"])
    target = ClusterTarget(endpoint=endpoint, cluster_id=cluster_id, owner_task_id=owner_task_id)
    return ReleaseTarget(
        cluster_id=cluster_id,
        owner_task_id=owner_task_id,
        target=target.discovered(topology),
        topology=topology,
    )


def _bound_root_credential(db: Database, cluster_key: str, endpoint: str) -> dict[str, Any] | None:
    """The newest root@sys credential an operator stored and bound to this cluster at this endpoint (the one
    a takeover started with `rootSysCredentialId` used)."""
    bound = [
        row
        for row in credentials.list_credentials(db, CLUSTER)
        if row["bound_cluster"] == cluster_key
        and endpoint in json.loads(row["endpoints"] or "[]")
        and str(row["username"]).split("@")[0] == "root"
    ]
    return max(bound, key=lambda row: int(row["id"])) if bound else None
