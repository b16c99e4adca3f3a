"""Task and cluster ids: allocated from the metadb, unique and never reused.

Ids are handed out before a takeover's workflow starts, so that the REST API can answer with them at
once and the task JSON, the metadb rows and the Temporal workflow all show the same numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime

from metadb.db import Database


def _allocate(db: Database, table: str) -> int:
    return db.execute(
        f"INSERT INTO {table} (created_at) VALUES (?)", (datetime.now(UTC).isoformat(timespec="seconds"),)
    )


def allocate_task_id(db: Database) -> int:
    return _allocate(db, "task_ids")


def allocate_cluster_id(db: Database) -> int:
    return _allocate(db, "cluster_ids")
