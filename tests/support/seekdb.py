"""A throw-away seekdb (a single-node OceanBase server from the `pylibseekdb` wheel) on loopback, to
prove the statements that carry user names and passwords against OceanBase's own parser."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.mariadb import free_port, sql_server


def seekdb_binary() -> Path:
    spec = importlib.util.find_spec("pylibseekdb")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pylibseekdb is not installed: pip install -e '.[dev]'")
    return Path(next(iter(spec.submodule_search_locations))) / "seekdb"


@contextmanager
def seekdb_server(base: Path) -> Iterator[tuple[str, int]]:
    """Start seekdb in `base`; yields (host, port); root has an empty password. No telemetry."""
    base.mkdir(parents=True, exist_ok=True)
    port, rpc_port = free_port(), free_port()
    command = [str(seekdb_binary()), "--nodaemon", "--port", str(port), "--base-dir", str(base)]
    for parameter in (f"rpc_port={rpc_port}", "datafile_size=512M", "log_disk_size=2G", "memory_budget=2G"):
        command += ["--parameter", parameter]
    env = {**os.environ, "TELEMETRY_ENABLED": "false"}
    with sql_server("seekdb", command, port, base / "stdout.log", env=env, timeout=120) as address:
        yield address
