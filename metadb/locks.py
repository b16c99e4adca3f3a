"""Cluster locks ("Mc lock ob clusters") and the task registry.

A lock is one row per key: the cluster endpoint, and the cluster's name and id. Taking it is
all-or-nothing in one transaction; taking it again for the same workflow is a no-op; releasing it is
idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts.errors import ClusterLocked
from metadb.db import Database


def lock_keys(address: str, port: int, cluster_name: str | None, ob_cluster_id: int | None) -> list[str]:
    keys = [f"endpoint:{address}:{port}"]
    if cluster_name is not None and ob_cluster_id is not None:
        keys.append(f"cluster:{cluster_name}:{ob_cluster_id}")
    return keys


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def acquire(db: Database, keys: list[str], task_id: int, workflow_id: str, what: str) -> None:
    """Take every key for `workflow_id`, or none; ClusterLocked names the holder."""
    db.retry_conflicts(lambda: _acquire(db, keys, task_id, workflow_id, what))


def _acquire(db: Database, keys: list[str], task_id: int, workflow_id: str, what: str) -> None:
    with db.transaction():
        for key in keys:
            holder = db.one("SELECT task_id, workflow_id, locked_at FROM cluster_locks WHERE lock_key = ?", (key,))
            if holder and holder["workflow_id"] != workflow_id:
                raise ClusterLocked(
                    f"cluster {what} is locked by task {holder['task_id']} ({holder['workflow_id']}) "
                    f"since {holder['locked_at']}"
                )
        now = _now()
        for key in keys:
            db.insert_ignore(
                "cluster_locks",
                {"lock_key": key, "task_id": task_id, "workflow_id": workflow_id, "locked_at": now},
            )
        # A concurrent taker may have inserted first (its insert made ours a no-op): read the
        # latest rows, with a locking read on MySQL, and give up everything if one is not ours.
        for key in keys:
            holder = db.one(
                "SELECT task_id, workflow_id, locked_at FROM cluster_locks WHERE lock_key = ?" + db.for_update,
                (key,),
            )
            if holder is None:
                raise ClusterLocked(f"cluster {what} is being locked by another task")
            if holder["workflow_id"] != workflow_id:
                raise ClusterLocked(
                    f"cluster {what} is locked by task {holder['task_id']} ({holder['workflow_id']}) "
                    f"since {holder['locked_at']}"
                )


def release(db: Database, workflow_id: str) -> int:
    """Release every lock the workflow holds; returns how many were released (0 when already free)."""
    with db.transaction():
        held = db.query("SELECT lock_key FROM cluster_locks WHERE workflow_id = ?", (workflow_id,))
        db.execute("DELETE FROM cluster_locks WHERE workflow_id = ?", (workflow_id,))
    return len(held)


def force_release(db: Database, key: str) -> bool:
    """An operator's release of a stale lock by key."""
    with db.transaction():
        found = db.one("SELECT lock_key FROM cluster_locks WHERE lock_key = ?", (key,))
        db.execute("DELETE FROM cluster_locks WHERE lock_key = ?", (key,))
    return found is not None


def list_locks(db: Database) -> list[dict[str, Any]]:
    return db.query("SELECT lock_key, task_id, workflow_id, locked_at FROM cluster_locks ORDER BY lock_key")


def holder_of(db: Database, keys: list[str]) -> dict[str, Any] | None:
    for key in keys:
        row = db.one("SELECT lock_key, task_id, workflow_id, locked_at FROM cluster_locks WHERE lock_key = ?", (key,))
        if row:
            return row
    return None
