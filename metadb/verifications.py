"""The latest verification report of each managed cluster (`VerifyManagedCluster` writes it)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from metadb.db import Database


def save_report(db: Database, cluster_id: int, checked_at: str, drift: int, report: dict[str, Any]) -> None:
    """Keep `report` as the cluster's latest, unless a newer one is kept already (two verifications that
    overlap keep the later one)."""
    with db.transaction():
        row = db.one("SELECT checked_at FROM verifications WHERE cluster_id = ?", (cluster_id,))
        if row is not None and _moment(row["checked_at"]) > _moment(checked_at):
            return
        db.upsert(
            "verifications",
            {"cluster_id": cluster_id},
            {"checked_at": checked_at, "drift": drift, "report": json.dumps(report, sort_keys=True)},
        )


def latest_report(db: Database, cluster_id: int) -> dict[str, Any] | None:
    """The cluster's latest report as it was saved, or None."""
    row = db.one("SELECT report FROM verifications WHERE cluster_id = ?", (cluster_id,))
    return json.loads(row["report"]) if row else None


def last_checked(db: Database) -> dict[int, str]:
    """When each cluster was last verified, by cluster id."""
    return {int(row["cluster_id"]): str(row["checked_at"]) for row in db.query("SELECT * FROM verifications")}


def forget(db: Database, cluster_id: int) -> None:
    db.execute("DELETE FROM verifications WHERE cluster_id = ?", (cluster_id,))


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)
