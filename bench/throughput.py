"""Throughput: N takeovers of N simulated clusters (1 zone x 1 server, with its host) at once on one
production worker process (`python worker.py`), against the dev server.

    python bench/throughput.py [--clusters 20]

Prints the total wall time, the slowest takeover and the worker's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from bench.harness import machine, peak_rss_mb, start_dev_server
from contracts.settings import load_settings
from metadb import hosts
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_master_key
from ob_takeover.client import TakeoverClient
from tests.support.simulator import many_simulations, simulated_bodies, worker_env

ROOT = Path(__file__).resolve().parents[1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ob-takeover-throughput-"))
    env = await start_dev_server(work)
    metadb = f"sqlite:///{work / 'metadb.sqlite'}"
    key_file = work / "master.key"
    db = Database(metadb)
    migrate(db)
    vault = Vault(load_master_key(load_settings({"OB_TAKEOVER_MASTER_KEY_FILE": str(key_file)})))
    vault.verify(db)
    host_type = hosts.add_host_type(db, "bench")
    with many_simulations(work, args.clusters) as sims:
        known_hosts = work / "known_hosts"
        bodies = simulated_bodies(db, vault, sims, host_type)
        environment = worker_env(
            metadb=metadb,
            key_file=key_file,
            known_hosts=known_hosts,
            temporal=env.client.service_client.config.target_host,
            queue="throughput",
            poll_interval=0.2,
            log_level="WARNING",
        )
        worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=environment)
        try:
            client = TakeoverClient(env.client, "throughput", db=db, vault=vault)
            began = time.monotonic()
            takeovers = await asyncio.gather(*(client.start(body) for body in bodies))
            ends: list[float] = []

            async def finish(takeover: object) -> str:
                task = await takeover.result()  # type: ignore[attr-defined]
                ends.append(time.monotonic() - began)
                return str(task.status.value)

            statuses = await asyncio.gather(*(finish(t) for t in takeovers))
            wall = time.monotonic() - began
            rss = peak_rss_mb(worker.pid)
        finally:
            worker.terminate()
            worker.wait(30)
    await env.shutdown()
    print(f"\n{machine()}\n")
    print("| takeovers at once | successful | total wall s | slowest s | fastest s | worker peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.clusters} | {statuses.count('SUCCESSFUL')} | {wall:.1f} | {max(ends):.1f} | {min(ends):.1f} "
        f"| {rss:.0f} |"
    )


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
