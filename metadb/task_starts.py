"""What starting a task writes in the metadb before its workflow starts, and the undo when it cannot start.

A task gets its ids and its row in the task registry first, and the passwords of its request go into the
password box, owned by the task (deleted when it ends) and bound to its endpoint; the workflow input names
them by credential id, so no password enters Temporal's history. Every starter (the REST API, the Python
client and with it the CLI, a fleet's members) goes through here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts.messages import PreparedTask
from contracts.request import REQUEST_SECRETS, FieldError, InvalidRequest, TakeOverRequest
from contracts.stages import RELEASE_TASK_NAME
from contracts.task_view import RecordedStatus, task_name
from metadb import credentials, ids, tasks
from metadb.db import Database
from metadb.vault import Vault


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def prepare_takeover(
    db: Database, vault: Vault, request: TakeOverRequest, *, workflow_id: str, creator: str, trace_id: str | None
) -> PreparedTask:
    """Ids for a takeover of `request`, its task row (RUNNING, run not known yet) and its passwords in the box."""
    check_named_credentials(db, request)
    cluster_id = ids.allocate_cluster_id(db)
    task_id = _new_task(db, workflow_id, task_name(False), cluster_id, creator, trace_id)
    body, stored = _passwords_to_box(db, vault, request, _owner(task_id), task_id, cluster_id)
    return PreparedTask(
        task_id=task_id, cluster_id=cluster_id, workflow_id=workflow_id, input=body, stored_credential_ids=stored
    )


def prepare_precheck(db: Database, vault: Vault, request: TakeOverRequest, *, workflow_id: str) -> PreparedTask:
    """A precheck's input: its passwords in the box for the precheck's time (no task, no ids)."""
    check_named_credentials(db, request)
    body, stored = _passwords_to_box(db, vault, request, workflow_id, None, None)
    return PreparedTask(workflow_id=workflow_id, input=body, stored_credential_ids=stored)


def prepare_release(
    db: Database, *, workflow_id: str, cluster_id: int, body: dict[str, Any], creator: str, trace_id: str | None
) -> PreparedTask:
    """A release's task id and task row (its root@sys password is the one the takeover stored, or named)."""
    task_id = _new_task(db, workflow_id, RELEASE_TASK_NAME, cluster_id, creator, trace_id)
    return PreparedTask(task_id=task_id, cluster_id=cluster_id, workflow_id=workflow_id, input=body)


def _new_task(db: Database, workflow_id: str, name: str, cluster_id: int, creator: str, trace_id: str | None) -> int:
    """A new task id and its row in the registry: RUNNING, its run not known yet."""
    task_id = ids.allocate_task_id(db)
    tasks.record_task(
        db, task_id=task_id, workflow_id=workflow_id, run_id="", name=name, status=RecordedStatus.RUNNING,
        cluster_id=cluster_id, creator=creator, trace_id=trace_id,
    )  # fmt: skip
    return task_id


def record_started(db: Database, prepared: PreparedTask, run_id: str) -> None:
    """The task's workflow has started as run `run_id`."""
    if prepared.task_id is not None:
        tasks.record_task(
            db, task_id=prepared.task_id, workflow_id=prepared.workflow_id, run_id=run_id, name=None,
            status=RecordedStatus.RUNNING,
        )  # fmt: skip


def discard(db: Database, prepared: PreparedTask) -> None:
    """Undo a preparation whose workflow did not start (or a precheck that ended): the task row REJECTED (no
    list shows it), the passwords out of the box."""
    if prepared.task_id is not None:
        tasks.record_task(
            db, task_id=prepared.task_id, workflow_id=prepared.workflow_id, run_id="", name=None,
            status=RecordedStatus.REJECTED,
        )  # fmt: skip
    for credential_id in prepared.stored_credential_ids:
        credentials.delete_credential(db, credential_id)


def close_ended(db: Database, task_id: int, run_id: str, status: RecordedStatus) -> bool:
    """A task whose workflow run `run_id` ended without ending the task (it failed before its first subtask,
    or was terminated): its row gets `status`, and the passwords its start stored for it leave the password
    box (never the cluster's own, which its subtasks saved). Nothing changes unless the row still says RUNNING
    for that run; returns whether it was closed."""
    prefix = f"{_owner(task_id)}: "
    with db.transaction():
        changed = db.delete(
            "UPDATE tasks SET status = ?, updated_at = ? WHERE task_id = ? AND run_id = ? AND status = ?",
            (status.value, _now(), task_id, run_id, RecordedStatus.RUNNING.value),
        )
        if not changed:
            return False
        for row in db.query("SELECT id, name FROM credentials WHERE created_by_task_id = ?", (task_id,)):
            if str(row["name"]).startswith(prefix):
                db.execute("DELETE FROM credentials WHERE id = ?", (row["id"],))
    return True


def _owner(task_id: int) -> str:
    """How the passwords a start stores for task `task_id` are named: `task N: root@sys of ADDR:PORT`."""
    return f"task {task_id}"


def check_named_credentials(db: Database, request: TakeOverRequest) -> None:
    """Every credential `request` names by id exists in the password box and is of the kind its field needs,
    checked before anything is written, so that a typo is refused up front naming the field."""
    named = [
        ("rootSysCredentialId", request.root_sys_credential_id, credentials.CLUSTER),
        ("proxyroCredentialId", request.proxyro_credential_id, credentials.CLUSTER),
        ("hostInfo.credentialId", request.host_info.credential_id if request.host_info else None, credentials.HOST),
    ]
    errors = []
    for field, credential_id, kind in named:
        if credential_id is None:
            continue
        row = credentials.describe_credential(db, credential_id=credential_id)
        if row is None:
            message = f"credential {credential_id} does not exist in the password box (`ob-takeover credential list`)"
            errors.append(FieldError(field=field, message=message))
        elif row["kind"] != kind:
            message = f"credential {credential_id} is a {row['kind']} credential; a {kind} credential is needed"
            errors.append(FieldError(field=field, message=message))
    if errors:
        raise InvalidRequest(errors)


def _passwords_to_box(
    db: Database, vault: Vault, request: TakeOverRequest, owner: str, task_id: int | None, cluster_id: int | None
) -> tuple[dict[str, Any], list[int]]:
    """The workflow input for `request` with its passwords put in the password box (under names of `owner`'s
    own, so a concurrent request cannot replace them) and referenced instead; and the credentials made."""
    body = request.model_dump(mode="json", exclude_none=True)
    stored = []
    for field, reference, user in REQUEST_SECRETS:
        if field in body:
            body[reference] = credentials.save_credential(
                db,
                vault,
                kind=credentials.CLUSTER,
                name=f"{owner}: {user} of {request.endpoint}",
                username=user,
                secret=body.pop(field),
                cluster_id=cluster_id,
                created_by_task_id=task_id,
                endpoints=[request.endpoint],
            )
            stored.append(body[reference])
    return body, stored
