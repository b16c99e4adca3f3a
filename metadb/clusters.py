"""Managed clusters: the record, its zones, servers and tenants, the RS list and the config URL.

Every write is an idempotent upsert or a replace-the-set, so a subtask that runs twice leaves the
same rows as one that runs once; each has the undo its subtask's compensation calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from contracts.errors import ClusterAlreadyManaged
from metadb.db import Database
from metadb.ids import allocate_cluster_id

TAKINGOVER = "TAKINGOVER"
RUNNING = "RUNNING"
# A release has begun: the cluster is leaving management.
RELEASING = "RELEASING"

_TENANT_TABLES = ("tenants", "unit_configs", "resource_pools", "units")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def find_cluster(db: Database, name: str, ob_cluster_id: int) -> dict[str, Any] | None:
    return db.one("SELECT * FROM clusters WHERE name = ? AND ob_cluster_id = ?", (name, ob_cluster_id))


def get_cluster(db: Database, cluster_id: int) -> dict[str, Any] | None:
    row = db.one("SELECT * FROM clusters WHERE id = ?", (cluster_id,))
    return _parsed(row) if row else None


def clusters_named(db: Database, name: str) -> list[dict[str, Any]]:
    """The records of the clusters named `name` (one per obClusterId), as `get_cluster` gives them."""
    return [_parsed(row) for row in db.query("SELECT * FROM clusters WHERE name = ? ORDER BY id", (name,))]


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    for column in ("rs_list", "attributes"):
        row[column] = json.loads(row[column]) if row[column] else None
    return row


def create_cluster_record(
    db: Database,
    *,
    name: str,
    ob_cluster_id: int,
    address: str,
    port: int,
    connection_mode: str,
    version: str,
    task_id: int,
    cluster_id: int | None = None,
) -> int:
    """The cluster's record with status TAKINGOVER, under `cluster_id` (allocated before the task started)
    or a new id; the same task calling again gets the same id."""
    with db.transaction():
        existing = find_cluster(db, name, ob_cluster_id)
        taken = db.one("SELECT name, ob_cluster_id FROM clusters WHERE id = ?", (cluster_id,)) if cluster_id else None
        if taken and not existing:
            # An id from the workflow's memo that another cluster holds: never write over that cluster's row.
            raise ClusterAlreadyManaged(
                f"cluster id {cluster_id} is cluster {taken['name']} (id {taken['ob_cluster_id']}) already"
            )
        if existing and (existing["status"] != TAKINGOVER or existing["task_id"] != task_id):
            raise ClusterAlreadyManaged(
                f"cluster {name} (id {ob_cluster_id}) is already managed here as cluster {existing['id']} "
                f"({existing['status']})"
            )
        now = _now()
        db.upsert(
            "clusters",
            {"name": name, "ob_cluster_id": ob_cluster_id},
            {
                "id": existing["id"] if existing else (cluster_id or allocate_cluster_id(db)),
                "address": address,
                "port": port,
                "connection_mode": connection_mode,
                "version": version,
                "status": TAKINGOVER,
                "task_id": task_id,
                "created_at": existing["created_at"] if existing else now,
                "updated_at": now,
            },
        )
        row = find_cluster(db, name, ob_cluster_id)
    assert row is not None
    return int(row["id"])


def remove_cluster_record(db: Database, cluster_id: int, status: str = TAKINGOVER) -> None:
    """Undo "Prepare take over cluster" (the record is TAKINGOVER) or end a release (RELEASING): the record
    and everything recorded under it."""
    with db.transaction():
        for table in ("zones", "servers", *_TENANT_TABLES):
            db.execute(f"DELETE FROM {table} WHERE cluster_id = ?", (cluster_id,))
        db.execute("DELETE FROM clusters WHERE id = ? AND status = ?", (cluster_id, status))


def _update(db: Database, cluster_id: int, **values: Any) -> None:
    assignments = ", ".join(f"{column} = ?" for column in values)
    db.execute(
        f"UPDATE clusters SET {assignments}, updated_at = ? WHERE id = ?",
        (*values.values(), _now(), cluster_id),
    )


def set_rs_list(db: Database, cluster_id: int, rs_list: list[dict[str, Any]] | None) -> None:
    _update(db, cluster_id, rs_list=json.dumps(rs_list) if rs_list is not None else None)


def set_config_url(db: Database, cluster_id: int, url: str | None, previous: str | None) -> None:
    _update(db, cluster_id, config_url=url, previous_config_url=previous)


def set_attributes(db: Database, cluster_id: int, attributes: dict[str, Any] | None) -> None:
    _update(db, cluster_id, attributes=json.dumps(attributes, sort_keys=True) if attributes is not None else None)


def set_cluster_status(db: Database, cluster_id: int, status: str) -> None:
    _update(db, cluster_id, status=status)


def _replace(
    db: Database, table: str, cluster_id: int, key_columns: tuple[str, ...], rows: Iterable[dict[str, Any]]
) -> None:
    """Make the cluster's rows in `table` exactly `rows`: upsert each, delete the others."""
    rows = list(rows)
    with db.transaction():
        for row in rows:
            keys = {"cluster_id": cluster_id, **{c: row[c] for c in key_columns}}
            db.upsert(table, keys, {c: v for c, v in row.items() if c not in key_columns})
        wanted = {tuple(row[c] for c in key_columns) for row in rows}
        columns = ", ".join(key_columns)
        for existing in db.query(f"SELECT {columns} FROM {table} WHERE cluster_id = ?", (cluster_id,)):
            key = tuple(existing[c] for c in key_columns)
            if key not in wanted:
                where = " AND ".join(f"{c} = ?" for c in key_columns)
                db.execute(f"DELETE FROM {table} WHERE cluster_id = ? AND {where}", (cluster_id, *key))


def sync_topology(db: Database, cluster_id: int, zones: list[dict[str, Any]], servers: list[dict[str, Any]]) -> None:
    """Zones (name, region, idc, status) and servers (ip, rpc_port, sql_port, zone, status, …)."""
    with db.transaction():
        _replace(db, "zones", cluster_id, ("name",), zones)
        existing = {
            (row["ip"], row["rpc_port"]): row["process_info"]
            for row in db.query("SELECT ip, rpc_port, process_info FROM servers WHERE cluster_id = ?", (cluster_id,))
        }
        # Process info comes from another subtask and is kept across syncs.
        rows = [{**s, "process_info": existing.get((s["ip"], s["rpc_port"]))} for s in servers]
        _replace(db, "servers", cluster_id, ("ip", "rpc_port"), rows)


def clear_topology(db: Database, cluster_id: int) -> None:
    with db.transaction():
        db.execute("DELETE FROM zones WHERE cluster_id = ?", (cluster_id,))
        db.execute("DELETE FROM servers WHERE cluster_id = ?", (cluster_id,))


def sync_tenants(
    db: Database,
    cluster_id: int,
    tenants: list[dict[str, Any]],
    unit_configs: list[dict[str, Any]],
    pools: list[dict[str, Any]],
    units: list[dict[str, Any]],
) -> None:
    with db.transaction():
        _replace(db, "tenants", cluster_id, ("tenant_id",), tenants)
        _replace(db, "unit_configs", cluster_id, ("unit_config_id",), unit_configs)
        _replace(db, "resource_pools", cluster_id, ("resource_pool_id",), pools)
        _replace(db, "units", cluster_id, ("unit_id",), units)


def clear_tenants(db: Database, cluster_id: int) -> None:
    with db.transaction():
        for table in _TENANT_TABLES:
            db.execute(f"DELETE FROM {table} WHERE cluster_id = ?", (cluster_id,))


def set_server_process_info(db: Database, cluster_id: int, ip: str, rpc_port: int, info: dict[str, Any] | None) -> None:
    db.execute(
        "UPDATE servers SET process_info = ? WHERE cluster_id = ? AND ip = ? AND rpc_port = ?",
        (json.dumps(info, sort_keys=True) if info is not None else None, cluster_id, ip, rpc_port),
    )


def set_server_status(db: Database, cluster_id: int, ip: str, rpc_port: int, status: str) -> None:
    db.execute(
        "UPDATE servers SET status = ? WHERE cluster_id = ? AND ip = ? AND rpc_port = ?",
        (status, cluster_id, ip, rpc_port),
    )


def set_zone_status(db: Database, cluster_id: int, zone: str, status: str) -> None:
    db.execute("UPDATE zones SET status = ? WHERE cluster_id = ? AND name = ?", (status, cluster_id, zone))


def list_clusters(db: Database) -> list[dict[str, Any]]:
    return db.query(
        "SELECT id, name, ob_cluster_id, address, port, connection_mode, version, status, config_url "
        "FROM clusters ORDER BY id"
    )


def rows_of(db: Database, table: str, cluster_id: int) -> list[dict[str, Any]]:
    """Every row of one of the cluster's tables, in a stable order (for commands and tests)."""
    if table not in ("zones", "servers", *_TENANT_TABLES):
        raise ValueError(f"unknown table {table}")
    rows = db.query(f"SELECT * FROM {table} WHERE cluster_id = ?", (cluster_id,))
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


def record_server_process_info(
    db: Database, cluster_id: int, *, ip: str, rpc_port: int, sql_port: int, zone: str, info: dict[str, Any]
) -> None:
    """Process info for a server, creating its row if "Sync cluster info" has not run yet."""
    db.insert_ignore(
        "servers",
        {
            "cluster_id": cluster_id,
            "ip": ip,
            "rpc_port": rpc_port,
            "sql_port": sql_port,
            "zone": zone,
            "status": "UNKNOWN",
            "with_rootserver": "NO",
            "build_version": "",
        },
    )
    set_server_process_info(db, cluster_id, ip, rpc_port, info)
