"""Fleets: one-server simulated clusters (real SQL and SSH) taken over by `TakeOverFleet` on production
worker processes (`python worker.py`) at production timeouts, against one dev server, all in one run so
that the ratios are honest.

    python bench/fleet.py [--clusters 50] [--calibration 30] [--staggered-calibration 60]

Prints two tables:
- one takeover alone, then the fleet of N with `maxConcurrent` N on one worker and on two workers: wall
  time, the ratio to the single takeover (target <= 1.5 on one worker) and the workers' peak RSS;
- the staggered case: 6 takeovers calibrating for 60 s, then 2 more started 8 s later, on one worker.
Each scenario gets fresh clusters and a fresh MariaDB metadb (two workers share it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.testing import WorkflowEnvironment

from bench.harness import (
    cpu_by_program,
    cpu_by_program_since,
    cpu_seconds,
    machine,
    peak_rss_mb,
    start_dev_server,
    workflow_task_timeouts,
)
from contracts.settings import load_settings
from metadb import hosts
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_master_key
from ob_takeover.client import TakeoverClient
from tests.support.mariadb import create_database, mariadb_server
from tests.support.simulator import many_simulations, simulated_bodies, worker_env

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    name: str
    clusters: int
    workers: int
    successful: int
    wall: float
    rss: list[float]
    worker_cpu: float = 0.0
    machine_cpu: float = 0.0
    # CPU seconds by program (worker, temporal, simulator, mariadb, other) over the run.
    by_program: dict[str, float] | None = None

    def per_takeover(self, program: str) -> str:
        spent = (self.by_program or {}).get(program)
        return "" if spent is None else f"{spent / self.clusters:.2f}"


class Bench:
    def __init__(self, env: WorkflowEnvironment, work: Path, mariadb: tuple[str, int]) -> None:
        self.env = env
        self.work = work
        self.mariadb = mariadb
        self.client = TakeoverClient(env.client, "fleet-bench")
        self.notes: list[str] = []

    @contextmanager
    def scenario(
        self, name: str, clusters: int, calibration: float, workers: int
    ) -> Iterator[tuple[list[dict[str, Any]], list[subprocess.Popen[bytes]]]]:
        """Fresh clusters, a fresh metadb and `workers` worker processes on a queue of the scenario's own."""
        work = self.work / name
        work.mkdir()
        metadb = create_database(*self.mariadb, f"bench_{uuid.uuid4().hex[:10]}")
        key_file = work / "master.key"
        db = Database(metadb)
        migrate(db)
        vault = Vault(load_master_key(load_settings({"OB_TAKEOVER_MASTER_KEY_FILE": str(key_file)})))
        vault.verify(db)
        queue = f"fleet-bench-{name}"
        # Takeovers start as every starter starts them: their passwords into this scenario's password box.
        self.client = TakeoverClient(self.env.client, queue, db=db, vault=vault)
        extra = ["--io-calibration-seconds", str(calibration)]
        with many_simulations(work, clusters, extra=extra) as sims:
            bodies = simulated_bodies(db, vault, sims, hosts.add_host_type(db, "bench"))
            env = worker_env(
                metadb=metadb,
                key_file=key_file,
                known_hosts=work / "known_hosts",
                temporal=self.env.client.service_client.config.target_host,
                queue=queue,
                log_level="WARNING",
            )
            processes = [subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env) for _ in range(workers)]
            try:
                yield bodies, processes
            finally:
                for process in processes:
                    process.terminate()
                    process.wait(30)
                db.close()

    async def single(self, calibration: float) -> Outcome:
        with self.scenario("single", 1, calibration, workers=1) as (bodies, processes):
            began, machine_began, programs = time.monotonic(), cpu_seconds(), cpu_by_program()
            task = await (await self.client.start(bodies[0])).result()
            wall = time.monotonic() - began
            rss = [peak_rss_mb(p.pid) for p in processes]
            worker_cpu = cpu_seconds(processes[0].pid)
            machine_cpu = cpu_seconds() - machine_began
            spent = cpu_by_program_since(programs)
        successful = int(task.status.value == "SUCCESSFUL")
        return Outcome("one takeover", 1, 1, successful, wall, rss, worker_cpu, machine_cpu, spent)

    async def fleet(self, clusters: int, calibration: float, workers: int) -> Outcome:
        with self.scenario(f"fleet{clusters}x{workers}", clusters, calibration, workers) as (bodies, processes):
            began, machine_began, programs = time.monotonic(), cpu_seconds(), cpu_by_program()
            fleet = await self.client.start_fleet(
                {"requests": bodies, "maxConcurrent": clusters}, f"bench-{uuid.uuid4().hex[:8]}"
            )
            view = await fleet.result()
            wall = time.monotonic() - began
            rss = [peak_rss_mb(p.pid) for p in processes]
            worker_cpu = sum(cpu_seconds(p.pid) for p in processes)
            machine_cpu = cpu_seconds() - machine_began
            spent = cpu_by_program_since(programs)
            self.notes.append(
                f"fleet of {clusters} on {workers} worker(s), CPU s by program: "
                + ", ".join(f"{k} {v:.1f}" for k, v in sorted(spent.items(), key=lambda kv: -kv[1]))
            )
            await self.phases(view)
        successful = view.counts.get("SUCCESSFUL", 0)
        return Outcome(f"fleet of {clusters}", clusters, workers, successful, wall, rss, worker_cpu, machine_cpu, spent)

    async def phases(self, view: Any) -> None:
        """When, after the first member started, the members' io calibrations began and their tasks ended."""
        tasks = [await self.client.get(m.workflow_id).result() for m in view.members]
        first = min(datetime.fromisoformat(t.start_time) for t in tasks)

        def seconds(moment: str | None) -> float:
            return (datetime.fromisoformat(moment) - first).total_seconds() if moment else float("nan")

        calibrations = sorted(
            seconds(s.start_time) for t in tasks for s in t.subtasks if s.name == "Run io calibration"
        )
        calibrated = sorted(seconds(s.finish_time) for t in tasks for s in t.subtasks if s.name == "Run io calibration")
        ends = sorted(seconds(t.finish_time) for t in tasks)
        timeouts = 0
        for member in view.members:
            history = await self.env.client.get_workflow_handle(member.workflow_id).fetch_history()
            timeouts += workflow_task_timeouts(history)
        self.notes.append(
            f"{len(tasks)} members' histories: {timeouts} workflow task(s) timed out (the sticky queue waits 3 s)"
        )
        self.notes.append(
            f"{len(tasks)} members: io calibrations began {calibrations[0]:.1f}-{calibrations[-1]:.1f} s, "
            f"ended {calibrated[0]:.1f}-{calibrated[-1]:.1f} s, tasks ended {ends[0]:.1f}-{ends[-1]:.1f} s "
            "after the first member started"
        )

    async def staggered(self, calibration: float) -> Outcome:
        with self.scenario("staggered", 8, calibration, workers=1) as (bodies, processes):
            began = time.monotonic()
            fleet = await self.client.start_fleet(
                {"requests": bodies[:6], "maxConcurrent": 6}, f"bench-{uuid.uuid4().hex[:8]}"
            )
            await asyncio.sleep(8)
            late = await asyncio.gather(*(self.client.start(body) for body in bodies[6:]))
            view = await fleet.result()
            tasks = [await t.result() for t in late]
            wall = time.monotonic() - began
            rss = [peak_rss_mb(p.pid) for p in processes]
        successful = view.counts.get("SUCCESSFUL", 0) + sum(t.status.value == "SUCCESSFUL" for t in tasks)
        return Outcome("6 calibrating + 2 started 8 s later", 8, 1, successful, wall, rss)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--calibration", type=float, default=30.0, help="io calibration seconds of the fleet")
    parser.add_argument("--staggered-calibration", type=float, default=60.0)
    parser.add_argument("--only-fleet", action="store_true", help="one takeover and the fleet on one worker only")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ob-takeover-fleet-"))
    env = await start_dev_server(work)
    with mariadb_server(work / "mariadb") as mariadb:
        bench = Bench(env, work, mariadb)
        single = await bench.single(args.calibration)
        one = await bench.fleet(args.clusters, args.calibration, workers=1)
        two = None if args.only_fleet else await bench.fleet(args.clusters, args.calibration, workers=2)
        staggered = None if args.only_fleet else await bench.staggered(args.staggered_calibration)
    await env.shutdown()
    print(f"\n{machine()}; production timeouts; io calibration {args.calibration:.0f} s; MariaDB metadb\n")
    print(
        "| run | clusters | workers | successful | wall s | x one takeover | worker CPU s | machine CPU s "
        "| CPU s per takeover: worker / Temporal / simulator | worker peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for outcome in (single, one, *([two] if two else [])):
        rss = " + ".join(f"{r:.0f}" for r in outcome.rss)
        per = " / ".join(outcome.per_takeover(program) for program in ("worker", "temporal", "simulator"))
        print(
            f"| {outcome.name} | {outcome.clusters} | {outcome.workers} | {outcome.successful} | {outcome.wall:.1f} "
            f"| {outcome.wall / single.wall:.2f} | {outcome.worker_cpu:.1f} | {outcome.machine_cpu:.1f} | {per} "
            f"| {rss} |"
        )
    for note in bench.notes:
        print(f"\n{note}")
    if staggered is None:
        return
    print(f"\nstaggered, io calibration {args.staggered_calibration:.0f} s, one worker:\n")
    print("| run | takeovers | successful | wall s | worker peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| {staggered.name} | {staggered.clusters} | {staggered.successful} | {staggered.wall:.1f} "
        f"| {staggered.rss[0]:.0f} |"
    )


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
