"""REST API: response time of `POST /api/v2/ob/clusters/takeOver`, called the way OCP clients call it.

    python bench/api.py [--calls 50]

The service runs in this process on loopback (FastAPI on uvicorn, SQLite metadb), the dev server and a
worker of instant stand-in activities (`bench/fake_worker.py`) in their own processes. Each call takes a
different endpoint over, so every call starts a takeover; the answer is the task with its subtasks, as
OCP's is. Calls go one after the other with `requests` (Basic auth, JSON). Prints p50, p95 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import machine, start_dev_server
from contracts.settings import load_settings
from metadb import users
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import MasterKey, Vault
from ob_takeover.api.auth import Authenticator
from ob_takeover.api.routes import Services
from ob_takeover.service import create_app, serve
from tests.support.mariadb import free_port

ROOT = Path(__file__).resolve().parents[1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ob-takeover-api-"))
    env = await start_dev_server(work)
    address = env.client.service_client.config.target_host
    db = Database(f"sqlite:///{work / 'metadb.sqlite'}")
    migrate(db)
    vault = Vault(MasterKey.generate())
    vault.verify(db)
    users.add_user(db, "installer", users.TASK_MANAGER, "Installer-pw-1")
    settings = load_settings().model_copy(update={"task_queue": "bench-api"})

    async def connect() -> object:
        return env.client

    services = Services(settings=settings, db=db, vault=vault, auth=Authenticator(db), connect=connect)  # type: ignore[arg-type]
    port = free_port()
    service = await serve(create_app(db, services=services), "127.0.0.1", port)
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fake_worker.py"), address, "bench-api", "1", "1"], cwd=ROOT
    )
    session = requests.Session()
    session.auth = ("installer", "Installer-pw-1")
    session.headers["Content-Type"] = "application/json"
    times: list[float] = []
    base = f"http://127.0.0.1:{port}/api/v2"
    try:
        for call in range(args.calls):
            body = {"rootSysPassword": "bench", "address": f"127.0.0.{call + 2}", "port": 2881}
            began = time.perf_counter()
            reply = await asyncio.to_thread(session.post, f"{base}/ob/clusters/takeOver", json=body)
            times.append(time.perf_counter() - began)
            data = reply.json()["data"]
            assert reply.status_code == 200 and isinstance(data["id"], int) and data["subtasks"], reply.text
    finally:
        worker.terminate()
        worker.wait()
        await service.cleanup()
        await env.shutdown()
    times.sort()
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    print(machine())
    print("| calls | p50 ms | p95 ms | max ms |")
    print("|---:|---:|---:|---:|")
    print(f"| {len(times)} | {statistics.median(times) * 1000:.0f} | {p95 * 1000:.0f} | {times[-1] * 1000:.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
