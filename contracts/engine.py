"""The Temporal contract: workflow types, workflow ids, queries, updates and search attributes.

Clients, the CLI, the REST API and the workflows all take these names from here.
"""

from __future__ import annotations

TAKEOVER_WORKFLOW = "TakeOverCluster"
PRECHECK_WORKFLOW = "TakeOverPrecheck"
DEFAULT_TASK_QUEUE = "ob-takeover"

TASK_QUERY = "task"
SUBTASK_LOG_QUERY = "subtask_log"
RETRY_UPDATE = "retry"
RETRY_SUBTASK_UPDATE = "retry_subtask"
SKIP_SUBTASK_UPDATE = "skip_subtask"
CANCEL_SUBTASK_UPDATE = "cancel_subtask"
ROLLBACK_UPDATE = "rollback"

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


def workflow_id_for(address: str, port: int) -> str:
    """One running takeover per cluster endpoint: the workflow id is derived from it."""
    return f"takeover-{address}-{port}"
