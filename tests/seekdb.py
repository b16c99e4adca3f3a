"""A throw-away seekdb (a single-node OceanBase server from the `pylibseekdb` wheel) on loopback, to
prove the statements that carry user names and passwords against OceanBase's own parser."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql

from tests.mariadb import free_port


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
    log = (base / "stdout.log").open("wb")
    command = [str(seekdb_binary()), "--nodaemon", "--port", str(port), "--base-dir", str(base)]
    for parameter in (f"rpc_port={rpc_port}", "datafile_size=512M", "log_disk_size=2G", "memory_budget=2G"):
        command += ["--parameter", parameter]
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TELEMETRY_ENABLED": "false"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=port, user="root", password="", connect_timeout=1).close()
                break
            except pymysql.err.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"seekdb did not start: {(base / 'stdout.log').read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
