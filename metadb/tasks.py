"""The task registry: every takeover task's id, its workflow and run, its cluster, who started it, its status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from contracts.errors import FailedPrecondition
from contracts.task_view import FINISHED, RecordedStatus
from metadb.db import Database


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_task(
    db: Database,
    *,
    task_id: int,
    workflow_id: str,
    run_id: str,
    name: str | None,
    status: str,
    cluster_id: int | None = None,
    creator: str | None = None,
    trace_id: str | None = None,
) -> None:
    """Insert or update a task's row; what is not known here (an empty run id, None) keeps its value."""
    with db.transaction():
        existing = db.one("SELECT * FROM tasks WHERE task_id = ?", (task_id,)) or {}
        db.upsert(
            "tasks",
            {"task_id": task_id},
            {
                "workflow_id": workflow_id,
                "run_id": run_id or existing.get("run_id") or "",
                "cluster_id": cluster_id if cluster_id is not None else existing.get("cluster_id"),
                "name": name or existing.get("name") or "Take over primary OB cluster",
                "status": status,
                "creator": creator or existing.get("creator"),
                "trace_id": trace_id or existing.get("trace_id"),
                "created_at": existing.get("created_at") or _now(),
                "updated_at": _now(),
            },
        )


def check_task_owner(db: Database, task_id: int, workflow_id: str, run_id: str) -> None:
    """Refuse work for task `task_id` from a workflow that is not the task's: the id comes from the
    workflow's memo, which whoever starts a workflow sets, and every "own rows only" rule keys on it."""
    row = get_task(db, task_id)
    if row is None:
        return
    if row["workflow_id"] != workflow_id or (row["status"] in FINISHED and row["run_id"] not in ("", run_id)):
        raise FailedPrecondition(
            f"task id {task_id} belongs to workflow {row['workflow_id']} (run {row['run_id'] or '-'}, "
            f"{row['status']}), not to this one; start the takeover without a taskId in its memo"
        )


def get_task(db: Database, task_id: int) -> dict[str, Any] | None:
    return db.one("SELECT * FROM tasks WHERE task_id = ?", (task_id,))


def list_tasks(
    db: Database,
    *,
    name: str | None = None,
    cluster_id: int | None = None,
    statuses: Sequence[str] | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Tasks, newest first, filtered by name, cluster and recorded status (REJECTED ones never: no workflow
    ran for them), from `offset`, at most `limit`."""
    clause, args = _filter(name, cluster_id, statuses)
    page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
    return db.query(f"SELECT * FROM tasks{clause} ORDER BY task_id DESC{page}", args)


def count_tasks(
    db: Database, *, name: str | None = None, cluster_id: int | None = None, statuses: Sequence[str] | None = None
) -> int:
    """How many tasks `list_tasks` lists without a limit."""
    clause, args = _filter(name, cluster_id, statuses)
    row = db.one(f"SELECT COUNT(*) AS N FROM tasks{clause}", args)
    return int(row["N"]) if row else 0


def _filter(name: str | None, cluster_id: int | None, statuses: Sequence[str] | None) -> tuple[str, list[object]]:
    where = ["status <> ?"]
    args: list[object] = [RecordedStatus.REJECTED.value]
    if name:
        where.append("name = ?")
        args.append(name)
    if cluster_id is not None:
        where.append("cluster_id = ?")
        args.append(cluster_id)
    if statuses is not None:
        where.append(f"status IN ({', '.join('?' for _ in statuses) or 'NULL'})")
        args.extend(statuses)
    return " WHERE " + " AND ".join(where), args


def latest_task_of(db: Database, workflow_id: str) -> dict[str, Any] | None:
    """The newest task a workflow id has run."""
    return db.one("SELECT * FROM tasks WHERE workflow_id = ? ORDER BY task_id DESC LIMIT 1", (workflow_id,))
