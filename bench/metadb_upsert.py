"""Latency of the metadb's idempotent writes on each backend: SQLite file and a throw-away MariaDB.

    python bench/metadb_upsert.py [--count 500]

Prints a table: per backend, the median and p95 of one upsert (a server row), of a whole
"Sync cluster info" (3 zones, 6 servers, in one transaction) and of taking and releasing a cluster lock.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metadb import clusters, locks
from metadb.db import Database
from metadb.migrate import migrate
from tests.support.mariadb import create_database, mariadb_server


def timings(count: int, work: Callable[[int], None]) -> tuple[float, float]:
    samples = []
    for i in range(count):
        began = time.perf_counter()
        work(i)
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def measure(db: Database, count: int) -> list[tuple[str, float, float]]:
    migrate(db)
    cluster_id = clusters.create_cluster_record(
        db, name="bench", ob_cluster_id=1, address="127.0.0.2", port=2881, connection_mode="direct",
        version="4.2.1.8", task_id=1,
    )  # fmt: skip
    zones = [{"name": f"zone{z}", "region": "r", "idc": f"idc{z}", "status": "ACTIVE"} for z in range(3)]
    servers = [
        {"ip": f"127.0.0.{i + 2}", "rpc_port": 2882, "sql_port": 2881, "zone": f"zone{i % 3}", "status": "ACTIVE",
         "with_rootserver": "NO", "build_version": "4.2.1.8"}
        for i in range(6)
    ]  # fmt: skip

    def upsert(i: int) -> None:
        db.upsert(
            "servers",
            {"cluster_id": cluster_id, "ip": "127.0.0.2", "rpc_port": 2882},
            {"sql_port": 2881, "zone": "zone0", "status": "ACTIVE", "with_rootserver": "NO", "build_version": str(i)},
        )

    def lock(i: int) -> None:
        keys = locks.lock_keys("127.0.0.2", 2881, "bench", 1)
        locks.acquire(db, keys, i, f"wf-{i}", "bench")
        locks.release(db, f"wf-{i}")

    return [
        ("upsert one server row", *timings(count, upsert)),
        (
            "Sync cluster info (3 zones, 6 servers)",
            *timings(count // 5, lambda i: clusters.sync_topology(db, cluster_id, zones, servers)),
        ),
        ("take and release the cluster lock", *timings(count // 5, lock)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        sqlite = Database(f"sqlite:///{directory}/metadb.sqlite")
        rows += [("SQLite (WAL)", *row) for row in measure(sqlite, args.count)]
        with mariadb_server(Path(directory) / "mariadb") as (host, port):
            mysql = Database(create_database(host, port, "bench"))
            rows += [("MariaDB 10.11 (loopback)", *row) for row in measure(mysql, args.count)]
            mysql.close()
    print(f"\nmachine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}\n")
    print(f"| {'backend':<26} | {'operation':<40} | {'median ms':>9} | {'p95 ms':>7} |")
    print(f"|{'-' * 28}|{'-' * 42}|{'-' * 10}:|{'-' * 8}:|")
    for backend, operation, median, p95 in rows:
        print(f"| {backend:<26} | {operation:<40} | {median:>9.2f} | {p95:>7.2f} |")


if __name__ == "__main__":
    main()
