"""`ob-takeover serve` as a process of its own, on a metadb of the test's, with one user per role: for tests
that call the service from outside (a schema-driven client, a browser)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from metadb import users
from metadb.db import Database
from metadb.migrate import migrate
from tests.support.mariadb import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"admin": "Admin-pw-4321", "manager": "Manager-pw-4321", "viewer": "Viewer-pw-4321"}
ROLES = {"admin": users.ADMIN, "manager": users.TASK_MANAGER, "viewer": users.TASK_VIEWER}


@dataclass
class Served:
    base: str
    codec: str
    db: Database
    log: Path

    def auth(self, who: str = "admin") -> tuple[str, str]:
        return who, PASSWORDS[who]


@contextmanager
def served(tmp_path: Path, *, temporal_address: str, task_queue: str, temporal_ui: str = "") -> Iterator[Served]:
    """The service on free loopback ports until the block ends; Temporal at `temporal_address`."""
    metadb = f"sqlite:///{tmp_path / 'metadb.sqlite'}"
    db = Database(metadb)
    migrate(db)
    for name, role in ROLES.items():
        users.add_user(db, name, role, PASSWORDS[name])
    api, codec = free_port(), free_port()
    env = {
        **os.environ,
        "OB_TAKEOVER_METADB": metadb,
        "OB_TAKEOVER_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "OB_TAKEOVER_CODEC_KEY_FILE": str(tmp_path / "codec.key"),
        "OB_TAKEOVER_TASK_QUEUE": task_queue,
        "TEMPORAL_ADDRESS": temporal_address,
        "OB_TAKEOVER_CONFIG": os.devnull,
    }
    if temporal_ui:
        env["TEMPORAL_UI"] = temporal_ui
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from ob_takeover.cli import main; main()", "serve",
             "--listen", f"127.0.0.1:{api}", "--codec-listen", f"127.0.0.1:{codec}"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{api}"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield Served(base, f"http://127.0.0.1:{codec}", db, log)
    finally:
        process.terminate()
        process.wait(30)
        db.close()
