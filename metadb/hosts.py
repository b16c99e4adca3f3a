"""Host types and hosts: the machines carrying a managed cluster's observers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from contracts.errors import FailedPrecondition
from metadb.db import Database


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def add_host_type(db: Database, name: str, description: str = "") -> int:
    """Create a host type (or return the existing one with that name)."""
    db.insert_ignore("host_types", {"name": name, "description": description, "created_at": _now()})
    row = db.one("SELECT id FROM host_types WHERE name = ?", (name,))
    assert row is not None
    return int(row["id"])


def list_host_types(db: Database) -> list[dict[str, Any]]:
    return db.query("SELECT id, name, description, created_at FROM host_types ORDER BY id")


def host_type_exists(db: Database, host_type_id: int) -> bool:
    return db.one("SELECT id FROM host_types WHERE id = ?", (host_type_id,)) is not None


def delete_host_type(db: Database, host_type_id: int) -> bool:
    used = db.one("SELECT ip FROM hosts WHERE host_type_id = ?", (host_type_id,))
    if used:
        raise ValueError(f"host type {host_type_id} is used by host {used['ip']}")
    found = host_type_exists(db, host_type_id)
    db.execute("DELETE FROM host_types WHERE id = ?", (host_type_id,))
    return found


def find_host(db: Database, ip: str) -> dict[str, Any] | None:
    row = db.one("SELECT * FROM hosts WHERE ip = ?", (ip,))
    if row and row.get("facts"):
        row["facts"] = json.loads(row["facts"])
    return row


def register_host(
    db: Database,
    *,
    ip: str,
    ssh_port: int,
    kind: str,
    publish_ports: str | None,
    host_type_id: int,
    credential_id: int,
    task_id: int,
) -> int:
    """Register a host for a takeover; an already registered host is left as it is."""
    now = _now()
    db.insert_ignore(
        "hosts",
        {
            "ip": ip,
            "ssh_port": ssh_port,
            "kind": kind,
            "publish_ports": publish_ports,
            "host_type_id": host_type_id,
            "credential_id": credential_id,
            "registered_by_task_id": task_id,
            "created_at": now,
            "updated_at": now,
        },
    )
    row = db.one("SELECT id FROM hosts WHERE ip = ?", (ip,))
    assert row is not None
    return int(row["id"])


def registration_of(db: Database, cluster_id: int, task_id: int) -> dict[str, Any] | None:
    """How the hosts of cluster `cluster_id` were registered (ip, ssh_port, kind, publish_ports, host_type_id,
    credential_id, registered_by_task_id): a host task `task_id` registered (its request's hostInfo), else any
    host the cluster holds; None when it holds none."""
    rows = db.query(
        "SELECT ip, ssh_port, kind, publish_ports, host_type_id, credential_id, registered_by_task_id "
        "FROM hosts WHERE reserved_by_cluster_id = ? ORDER BY id",
        (cluster_id,),
    )
    own = [row for row in rows if row["registered_by_task_id"] == task_id]
    return (own or rows)[0] if rows else None


def reserve_host(db: Database, ip: str, cluster_id: int, facts: dict[str, Any]) -> None:
    """Reserve a host for a cluster unless another cluster holds it (a conditional write: of two takeovers
    racing for one host, one wins and the other gets FailedPrecondition)."""
    with db.transaction():
        db.execute(
            "UPDATE hosts SET reserved_by_cluster_id = ?, facts = ?, updated_at = ? "
            "WHERE ip = ? AND (reserved_by_cluster_id IS NULL OR reserved_by_cluster_id = ?)",
            (cluster_id, json.dumps(facts, sort_keys=True), _now(), ip, cluster_id),
        )
        row = db.one("SELECT reserved_by_cluster_id FROM hosts WHERE ip = ?", (ip,))
    if row is None:
        raise FailedPrecondition("host is not registered", node=ip)
    if row["reserved_by_cluster_id"] != cluster_id:
        raise FailedPrecondition(f"host is reserved by managed cluster {row['reserved_by_cluster_id']}", node=ip)


def unreserve_hosts(db: Database, cluster_id: int, task_id: int) -> list[str]:
    """Undo "Reserve host": forget hosts this task registered, unreserve the others."""
    with db.transaction():
        removed = [
            row["ip"]
            for row in db.query(
                "SELECT ip FROM hosts WHERE registered_by_task_id = ? AND "
                "(reserved_by_cluster_id IS NULL OR reserved_by_cluster_id = ?)",
                (task_id, cluster_id),
            )
        ]
        db.execute(
            "DELETE FROM hosts WHERE registered_by_task_id = ? AND "
            "(reserved_by_cluster_id IS NULL OR reserved_by_cluster_id = ?)",
            (task_id, cluster_id),
        )
        db.execute(
            "UPDATE hosts SET reserved_by_cluster_id = NULL, updated_at = ? WHERE reserved_by_cluster_id = ?",
            (_now(), cluster_id),
        )
    return removed


def set_host_key(db: Database, ip: str, host_key: str) -> None:
    db.execute("UPDATE hosts SET host_key = ?, updated_at = ? WHERE ip = ?", (host_key, _now(), ip))


def forget_host_key(db: Database, ip: str) -> bool:
    """Forget a host's recorded key; returns whether the host is managed here."""
    if find_host(db, ip) is None:
        return False
    db.execute("UPDATE hosts SET host_key = NULL, updated_at = ? WHERE ip = ?", (_now(), ip))
    return True


def list_hosts(db: Database) -> list[dict[str, Any]]:
    return db.query(
        "SELECT id, ip, ssh_port, kind, host_type_id, credential_id, reserved_by_cluster_id, created_at "
        "FROM hosts ORDER BY ip"
    )
