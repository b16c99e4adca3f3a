"""The managed inventory as readers see it: clusters with their zones, servers, tenants and hosts, read
together, and the hosts with the cluster each serves. Reads only; the takeover, the release (and the
verification) keep it true."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from metadb import clusters, tasks
from metadb.db import Database

# The columns a listing may sort on, by the name OCP's clients give them.
CLUSTER_SORTS = {"id": "id", "name": "name", "obClusterId": "ob_cluster_id", "status": "status",
                 "createTime": "created_at", "updateTime": "updated_at"}  # fmt: skip
HOST_SORTS = {"id": "h.id", "innerIpAddress": "h.ip", "name": "h.ip", "createTime": "h.created_at",
              "updateTime": "h.updated_at"}  # fmt: skip


@dataclass
class ClusterInventory:
    """One managed cluster's record and what the takeover recorded of it."""

    record: dict[str, Any]
    zones: list[dict[str, Any]] = field(default_factory=list)
    servers: list[dict[str, Any]] = field(default_factory=list)
    tenants: list[dict[str, Any]] = field(default_factory=list)
    # Host rows by IP, with their host type's name.
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    creator: str | None = None


def sort_pattern(columns: dict[str, str]) -> str:
    """The regular expression of the `sort` values `order_by` takes, for the API's document."""
    return f"^({'|'.join(columns)})(,([aA][sS][cC]|[dD][eE][sS][cC]))?$"


def order_by(sort: str | None, columns: dict[str, str]) -> str:
    """`ORDER BY` for OCP's `sort=field,asc|desc`; ValueError naming what is wrong (only known fields)."""
    if not sort:
        return columns["id"]
    name, _, direction = sort.partition(",")
    if name not in columns or direction.lower() not in ("", "asc", "desc"):
        raise ValueError(f"sort is FIELD[,asc|desc] with FIELD one of {', '.join(columns)}")
    return f"{columns[name]} {direction.upper() or 'ASC'}, {columns['id']}"


def cluster_page(
    db: Database, *, name: str | None, statuses: Sequence[str], sort: str | None, offset: int, limit: int
) -> tuple[list[ClusterInventory], int]:
    """Managed clusters whose name contains `name` (any case), in `statuses` (all if empty): a page, and the
    number that match."""
    where: list[str] = ["1 = 1"]
    args: list[object] = []
    if name:
        where.append("INSTR(LOWER(name), ?) > 0")
        args.append(name.lower())
    if statuses:
        where.append(f"status IN ({', '.join('?' for _ in statuses)})")
        args.extend(statuses)
    clause = " WHERE " + " AND ".join(where)
    ordering = order_by(sort, CLUSTER_SORTS)
    rows = db.query(
        f"SELECT id FROM clusters{clause} ORDER BY {ordering} LIMIT {int(limit)} OFFSET {int(offset)}", args
    )
    total = db.one(f"SELECT COUNT(*) AS N FROM clusters{clause}", args)
    found = [cluster_inventory(db, int(row["id"])) for row in rows]
    return [c for c in found if c is not None], int(total["N"]) if total else 0


def cluster_inventory(db: Database, cluster_id: int) -> ClusterInventory | None:
    record = clusters.get_cluster(db, cluster_id)
    if record is None:
        return None
    servers = clusters.rows_of(db, "servers", cluster_id)
    ips = sorted({row["ip"] for row in servers})
    hosts = {row["ip"]: row for row in host_rows(db, ips=ips)}
    takeover = tasks.get_task(db, int(record["task_id"])) if record["task_id"] is not None else None
    return ClusterInventory(
        record=record,
        zones=sorted(clusters.rows_of(db, "zones", cluster_id), key=lambda row: row["name"]),
        servers=sorted(servers, key=lambda row: (row["zone"], row["ip"], int(row["rpc_port"]))),
        tenants=clusters.rows_of(db, "tenants", cluster_id),
        hosts=hosts,
        creator=takeover.get("creator") if takeover else None,
    )


def host_rows(
    db: Database, *, ips: Sequence[str] | None = None, host_id: int | None = None, sort: str | None = None
) -> list[dict[str, Any]]:
    """Hosts (never a credential column), each with its host type's name and the managed cluster that holds it
    (`cluster_name`, `ob_cluster_id`, `cluster_version`; None for a host no cluster holds)."""
    where: list[str] = ["1 = 1"]
    args: list[object] = []
    if ips is not None:
        if not ips:
            return []
        where.append(f"h.ip IN ({', '.join('?' for _ in ips)})")
        args.extend(ips)
    if host_id is not None:
        where.append("h.id = ?")
        args.append(host_id)
    ordering = order_by(sort, HOST_SORTS)
    rows = db.query(
        "SELECT h.id, h.ip, h.ssh_port, h.kind, h.publish_ports, h.host_type_id, h.reserved_by_cluster_id, h.facts, "
        "h.created_at, h.updated_at, t.name AS type_name, t.description AS type_description, "
        "c.name AS cluster_name, c.ob_cluster_id, c.version AS cluster_version "
        "FROM hosts h LEFT JOIN host_types t ON t.id = h.host_type_id "
        "LEFT JOIN clusters c ON c.id = h.reserved_by_cluster_id "
        f"WHERE {' AND '.join(where)} ORDER BY {ordering}",
        args,
    )
    for row in rows:
        row["facts"] = json.loads(row["facts"]) if row.get("facts") else {}
    return rows
