"""The Temporal contract: workflow types, workflow ids, queries, updates and search attributes.

Clients, the CLI, the REST API and the workflows all take these names from here.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

TAKEOVER_WORKFLOW = "TakeOverCluster"
PRECHECK_WORKFLOW = "TakeOverPrecheck"
FLEET_WORKFLOW = "TakeOverFleet"
RELEASE_WORKFLOW = "ReleaseCluster"
VERIFY_WORKFLOW = "VerifyManagedCluster"
DEFAULT_TASK_QUEUE = "ob-takeover"

TASK_QUERY = "task"
SUBTASK_LOG_QUERY = "subtask_log"
# A verification's first report (before any repair).
REPORT_QUERY = "report"
RETRY_UPDATE = "retry"
RETRY_SUBTASK_UPDATE = "retry_subtask"
SKIP_SUBTASK_UPDATE = "skip_subtask"
CANCEL_SUBTASK_UPDATE = "cancel_subtask"
ROLLBACK_UPDATE = "rollback"
# A fleet's table, and the signal its members send it when their status changes.
FLEET_QUERY = "fleet"
MEMBER_UPDATE_SIGNAL = "member_update"

# Memo keys a starter may set: who started the task, the REST request's trace id, and the task and
# cluster ids the REST API allocated in the metadb before starting the workflow.
MEMO_CREATOR = "creator"
MEMO_TRACE_ID = "traceId"
MEMO_TASK_ID = "taskId"
MEMO_CLUSTER_ID = "clusterId"

# Subtask ids of a task are its id times this, plus the subtask's series number.
SUBTASK_IDS_PER_TASK = 100_000

# Keyword search attributes; never a secret in them (Temporal does not encrypt search attributes).
CLUSTER_NAME_ATTRIBUTE = "ObClusterName"
CLUSTER_ADDRESS_ATTRIBUTE = "ObClusterAddress"
TASK_STATUS_ATTRIBUTE = "ObTaskStatus"
SEARCH_ATTRIBUTE_NAMES = (CLUSTER_NAME_ATTRIBUTE, CLUSTER_ADDRESS_ATTRIBUTE, TASK_STATUS_ATTRIBUTE)


def task_memo(
    creator: str, trace_id: str | None = None, task_id: int | None = None, cluster_id: int | None = None
) -> dict[str, object]:
    """The memo a task's workflow starts with: who started it, and what the starter prepared for it."""
    prepared = {MEMO_TRACE_ID: trace_id, MEMO_TASK_ID: task_id, MEMO_CLUSTER_ID: cluster_id}
    return {MEMO_CREATOR: creator, **{key: value for key, value in prepared.items() if value is not None}}


def workflow_id_for(address: str, port: int) -> str:
    """One running takeover per cluster endpoint: the workflow id is derived from it."""
    return f"takeover-{address}-{port}"


def release_workflow_id_for(address: str, port: int) -> str:
    """One running release per cluster endpoint (the cluster lock keeps a takeover of it out as well)."""
    return f"release-{address}-{port}"


def verify_schedule_id(cluster_id: int, task_queue: str) -> str:
    """The Temporal Schedule that verifies managed cluster `cluster_id` (the metadb's id) at an interval; its
    runs' workflow ids start with it. Named after the deployment's task queue: two deployments on one
    namespace each number their clusters from 1."""
    return f"{verify_schedule_prefix(task_queue)}{cluster_id}"


def verify_schedule_prefix(task_queue: str) -> str:
    """What the ids of one deployment's verification schedules start with."""
    return f"verify-{task_queue}-cluster-"


def verify_workflow_id(cluster_id: int, suffix: str) -> str:
    """A verification started by hand (CLI, REST API): many may run; a repair holds the cluster lock."""
    return f"verify-{cluster_id}-{suffix}"


def fleet_workflow_id(name: str) -> str:
    """A fleet takeover's workflow id, from the name its starter gives it."""
    return f"fleet-{name}"


def config_url_for(public_url: str, cluster_name: str, ob_cluster_id: int) -> str:
    """The `obconfig_url` a managed cluster is pointed at: this service's config server."""
    query = f"Action=ObRootServiceInfo&ObCluster={cluster_name}&ObClusterId={ob_cluster_id}"
    return f"{public_url.rstrip('/')}/services?{query}"


def unreachable_config_url(public_url: str, server_ips: list[str]) -> str | None:
    """Why servers at `server_ips` cannot reach a config server at `public_url` (a loopback URL for servers
    that are not on loopback), or None when nothing is known to stop them."""
    host = urlsplit(public_url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return None
    outside = sorted(ip for ip in server_ips if not _is_loopback(ip))
    if loopback and outside:
        return (
            f"the config server's public URL {public_url} is a loopback address, which the servers at "
            f"{', '.join(outside[:3])}{' …' if len(outside) > 3 else ''} cannot reach: set public_url "
            "(OB_TAKEOVER_PUBLIC_URL) to an address they reach"
        )
    return None


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"
