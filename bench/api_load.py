"""The REST API under load, as a platform team's automation drives it: parallel takeOver calls from one
user with a cold login cache, and pollers reading the tasks, with many tasks recorded.

    python bench/api_load.py [--takeovers 8] [--pollers 16] [--seconds 40] [--recorded 1000]

Real components on loopback: the dev server, `ob-takeover serve` and `python worker.py` in processes of their
own (SQLite metadb), one-server simulated clusters with their SSH hosts (real SQL and SSH). The metadb holds
`--recorded` finished tasks first (their workflows past Temporal's retention: the registry answers for
them). Two phases, each with `--pollers` clients in threads (`requests`, Basic auth):
- polling alone: every poller lists `GET /api/v2/tasks/instances?page=1&size=20` for a quarter of the time;
- the burst: `--takeovers` parallel `POST takeOver` calls (the user's first requests: a cold login cache),
  while the pollers go on listing and reading the new tasks for `--seconds`; then every takeover to its end.
Prints per endpoint and phase: requests, status counts, p50, p95 and max; and the takeovers' outcomes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import machine, start_dev_server
from contracts.settings import load_settings
from metadb import hosts, tasks, users
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_master_key
from tests.support.mariadb import free_port
from tests.support.simulator import many_simulations, simulated_bodies, worker_env

ROOT = Path(__file__).resolve().parents[1]
# The pollers read as one user; the takeOver burst comes from another, whose login cache is cold.
USER, PASSWORD = "watcher", "Watcher-pw-1"
INSTALLER, INSTALLER_PASSWORD = "installer", "Installer-pw-1"
LIST = "/api/v2/tasks/instances?page=1&size=20"


class Recorder:
    """Latencies and statuses per (phase, endpoint), from many threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        self.statuses: dict[tuple[str, str], collections.Counter[int]] = collections.defaultdict(collections.Counter)

    def call(self, phase: str, endpoint: str, request: Callable[[], requests.Response]) -> requests.Response:
        began = time.perf_counter()
        reply = request()
        with self.lock:
            self.times[(phase, endpoint)].append(time.perf_counter() - began)
            self.statuses[(phase, endpoint)][reply.status_code] += 1
        return reply

    def table(self) -> str:
        header = f"{'phase':<10} {'endpoint':<24} {'requests':>8}  {'statuses':<22}"
        lines = [header + f" {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}"]
        for (phase, endpoint), times in self.times.items():
            ordered = sorted(times)
            p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
            counts = " ".join(f"{code}x{n}" for code, n in sorted(self.statuses[(phase, endpoint)].items()))
            lines.append(
                f"{phase:<10} {endpoint:<24} {len(times):>8}  {counts:<22} {statistics.median(ordered) * 1000:>7.0f} "
                f"{p95 * 1000:>7.0f} {ordered[-1] * 1000:>7.0f}"
            )
        return "\n".join(lines)


def session() -> requests.Session:
    polling = requests.Session()
    polling.auth = (USER, PASSWORD)
    polling.headers["Content-Type"] = "application/json"
    return polling


def poll(base: str, recorder: Recorder, phase: str, until: float, started: list[int]) -> None:
    """One poller: the task list, and now and then one of the started tasks, until `until`."""
    client = session()
    while time.monotonic() < until:
        recorder.call(phase, "GET task list (20)", lambda: client.get(base + LIST, timeout=60))
        if started:
            task = f"{base}/api/v2/tasks/instances/{random.choice(started)}"
            recorder.call(phase, "GET task", lambda task=task: client.get(task, timeout=60))  # type: ignore[misc]


def seed(db: Database, count: int) -> None:
    """`count` finished takeovers in the task registry, their workflows long gone from Temporal."""
    for number in range(count):
        tasks.record_task(
            db, task_id=10_000 + number, workflow_id=f"takeover-10.{number // 250}.{number % 250}.1-2881",
            run_id=str(uuid.uuid4()),
            name=None, status="SUCCESSFUL", creator=USER,
        )  # fmt: skip


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="ob-takeover-api-load-"))
    env = await start_dev_server(work)
    temporal = env.client.service_client.config.target_host
    metadb, key_file = f"sqlite:///{work / 'metadb.sqlite'}", work / "master.key"
    db = Database(metadb)
    migrate(db)
    vault = Vault(load_master_key(load_settings({"OB_TAKEOVER_MASTER_KEY_FILE": str(key_file)})))
    vault.verify(db)
    users.add_user(db, USER, users.TASK_VIEWER, PASSWORD)
    users.add_user(db, INSTALLER, users.ADMIN, INSTALLER_PASSWORD)
    seed(db, args.recorded)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    recorder = Recorder()
    with many_simulations(work, args.takeovers) as sims:
        bodies = simulated_bodies(db, vault, sims, hosts.add_host_type(db, "bench"))
        environment = worker_env(
            metadb=metadb, key_file=key_file, known_hosts=work / "known_hosts", temporal=temporal,
            queue="api-load", log_level="WARNING",
        )  # fmt: skip
        codec = str(free_port())
        service = subprocess.Popen(
            [str(Path(sys.executable).parent / "ob-takeover"), "serve", "--listen", f"127.0.0.1:{port}",
             "--codec-listen", f"127.0.0.1:{codec}"],
            cwd=ROOT, env=environment,
        )  # fmt: skip
        worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=environment)
        try:
            await asyncio.to_thread(wait_until_up, base)
            outcomes = await asyncio.to_thread(phases, args, base, bodies, recorder)
        finally:
            for process in (worker, service):
                process.terminate()
                process.wait(30)
    await env.shutdown()
    print(f"# REST API under load ({machine()}; {args.recorded} recorded tasks, {args.pollers} pollers)\n")
    print(recorder.table())
    print(f"\ntakeovers: {dict(collections.Counter(outcomes))}")


def wait_until_up(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/api/v2/time", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError("the service did not start")


def phases(args: argparse.Namespace, base: str, bodies: list[dict[str, Any]], recorder: Recorder) -> list[str]:
    started: list[int] = []
    quiet = time.monotonic() + args.seconds / 4
    pollers = [
        threading.Thread(target=poll, args=(base, recorder, "polling", quiet, started)) for _ in range(args.pollers)
    ]
    for thread in pollers:
        thread.start()
    for thread in pollers:
        thread.join()
    # The burst: the installer's first calls, all at once (its login cache is cold).
    until = time.monotonic() + args.seconds
    pollers = [
        threading.Thread(target=poll, args=(base, recorder, "burst", until, started)) for _ in range(args.pollers)
    ]
    replies: list[requests.Response] = []

    def take_over(body: dict[str, Any]) -> None:
        client = requests.Session()
        client.auth = (INSTALLER, INSTALLER_PASSWORD)
        reply = recorder.call(
            "burst", "POST takeOver", lambda: client.post(base + "/api/v2/ob/clusters/takeOver", json=body, timeout=60)
        )
        replies.append(reply)
        if reply.status_code == 200:
            started.append(int(reply.json()["data"]["id"]))

    callers = [threading.Thread(target=take_over, args=(body,)) for body in bodies]
    for thread in [*callers, *pollers]:
        thread.start()
    for thread in [*callers, *pollers]:
        thread.join()
    return [wait_for_end(base, task_id) for task_id in started] + [
        f"refused {r.status_code}" for r in replies if r.status_code != 200
    ]


def wait_for_end(base: str, task_id: int) -> str:
    client = session()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = str(client.get(f"{base}/api/v2/tasks/instances/{task_id}", timeout=60).json()["data"]["status"])
        if status != "RUNNING":
            return status
        time.sleep(1.0)
    return "still RUNNING"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takeovers", type=int, default=8)
    parser.add_argument("--pollers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--recorded", type=int, default=1000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
