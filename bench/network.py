"""A 3-zone x 2-server takeover (real SQL and SSH to the simulator) at several one-way latencies, in one run.

    python bench/network.py [--latency-ms 0 25 50] [--poll-interval 2] [--steps]

Each latency gets a fresh simulated cluster behind the simulator's network relay (`--network`, so that 0 ms
goes through the same relay as the others), a fresh SQLite metadb and a fresh in-process worker with the
production timeouts, on one dev server. Prints one row per latency: the takeover's wall time, the SSH and
MySQL connections the simulator accepted (`GET /network`), the statements it ran (`statement_log`), the host
commands the worker sent, an estimate of the round trips on the critical path (the wall time added over
the 0 ms run, divided by the round-trip time) and the worker's CPU seconds (this process: the worker and the
workflow client; the simulator and Temporal run apart). `--steps` adds each subtask's longest run per latency.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.client import Client

from activities.ports import CommandResult, HostLogin, HostPort
from activities.registry import build_activities
from activities.runtime import Runtime
from bench.harness import machine, start_dev_server
from contracts.task_view import TaskView
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import MasterKey, Vault
from tests.support.simulator import Simulation, simulation, takeover_body
from worker import build_worker
from workflows.takeover import TakeOverCluster


@dataclasses.dataclass
class Row:
    latency_ms: float
    status: str
    wall: float
    ssh: int
    sql: int
    statements: int
    commands: int
    worker_cpu: float
    steps: dict[str, float] = dataclasses.field(default_factory=dict)


def step_times(task: TaskView) -> dict[str, float]:
    """Each subtask name's longest run in seconds (the slowest of its fan-out, which is on the critical path)."""
    longest: dict[str, float] = {}
    for subtask in task.subtasks:
        if subtask.start_time and subtask.finish_time:
            took = (
                datetime.fromisoformat(subtask.finish_time) - datetime.fromisoformat(subtask.start_time)
            ).total_seconds()
            longest[subtask.name] = max(took, longest.get(subtask.name, 0.0))
    return longest


class CountedHost:
    """A host port that counts the commands sent through it."""

    def __init__(self, port: HostPort, counts: dict[str, int]) -> None:
        self._port = port
        self._counts = counts
        self.address = port.address

    async def run(
        self, command: str, *, input: str | None = None, check: bool = True, what: str | None = None
    ) -> CommandResult:
        self._counts["commands"] += 1
        return await self._port.run(command, input=input, check=check, what=what)

    async def __aenter__(self) -> CountedHost:
        await self._port.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._port.__aexit__(*exc_info)


def bench_runtime(work: Path, sim: Simulation, poll_interval: float, counts: dict[str, int]) -> Runtime:
    """A worker runtime with production settings for `sim`, whose host commands are counted."""
    db = Database(f"sqlite:///{work / 'metadb.sqlite'}")
    migrate(db)
    vault = Vault(MasterKey.generate())
    vault.verify(db)
    runtime = Runtime(db=db, vault=vault, known_hosts=sim.ready["ssh"]["known_hosts"], poll_interval=poll_interval)
    connect_host = runtime.host_connector

    def counted(login: HostLogin) -> HostPort:
        return CountedHost(connect_host(login), counts)

    return dataclasses.replace(runtime, host_connector=counted)


async def one_takeover(client: Client, work: Path, latency_ms: float, poll_interval: float) -> Row:
    work.mkdir()
    with simulation(work, zones=3, servers_per_zone=2, latency_ms=latency_ms, network=True) as sim:
        counts = {"commands": 0}
        runtime = bench_runtime(work, sim, poll_interval, counts)
        network_before = sim.settled_network()
        statements_before = len(sim.state()["statement_log"])
        body = takeover_body(sim, runtime)
        queue = f"network-bench-{uuid.uuid4().hex[:8]}"
        try:
            async with build_worker(client, activities=build_activities(runtime), queue=queue):
                began, cpu_began = time.perf_counter(), time.process_time()
                task = await client.execute_workflow(
                    TakeOverCluster.run, body, id=f"network-bench-{uuid.uuid4().hex[:8]}", task_queue=queue
                )
                wall, worker_cpu = time.perf_counter() - began, time.process_time() - cpu_began
        finally:
            await runtime.pools.close()
        network: dict[str, Any] = sim.call("GET", "/network")
        opened = {k: v - network_before["connections_opened"][k] for k, v in network["connections_opened"].items()}
        statements = len(sim.state()["statement_log"]) - statements_before
        runtime.db.close()
    return Row(
        latency_ms,
        task.status.value,
        wall,
        opened["ssh"],
        opened["sql"],
        statements,
        counts["commands"],
        worker_cpu,
        step_times(task),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 25.0, 50.0], help="one-way latencies")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="the worker's poll interval (production: 2)")
    parser.add_argument("--steps", action="store_true", help="also print each subtask's longest run per latency")
    parser.add_argument("--no-warm-up", action="store_true", help="skip the unreported first takeover at 0 ms")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ob-takeover-network-"))
    env = await start_dev_server(work)
    try:
        if not args.no_warm_up:
            # The first takeover of a process pays for imports and the workflow sandbox: not measured.
            await one_takeover(env.client, work / "warm-up", 0.0, args.poll_interval)
        rows = [
            await one_takeover(env.client, work / f"latency-{latency:g}", latency, args.poll_interval)
            for latency in args.latency_ms
        ]
    finally:
        await env.shutdown()
    base = next((row.wall for row in rows if row.latency_ms == 0), None)
    print(
        f"\n{machine()}; 3 zones x 2 servers (6 hosts) behind the simulator's relay; production timeouts; "
        f"poll interval {args.poll_interval:g} s; SQLite metadb\n"
    )
    print(
        "| one-way latency ms | status | wall s | SSH connections | MySQL connections | statements | commands "
        "| round trips on the critical path (est.) | worker CPU s |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        trips = f"{(row.wall - base) / (2 * row.latency_ms / 1000):.0f}" if base is not None and row.latency_ms else ""
        print(
            f"| {row.latency_ms:g} | {row.status} | {row.wall:.1f} | {row.ssh} | {row.sql} | {row.statements} "
            f"| {row.commands} | {trips} | {row.worker_cpu:.2f} |"
        )
    if args.steps:
        print_steps(rows)


def print_steps(rows: list[Row]) -> None:
    """One row per subtask name: its longest run at each latency, slowest growth first."""
    names = sorted(rows[0].steps, key=lambda name: rows[-1].steps.get(name, 0) - rows[0].steps.get(name, 0))
    print("\n| subtask | " + " | ".join(f"{row.latency_ms:g} ms" for row in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for name in reversed(names):
        print(f"| {name} | " + " | ".join(f"{row.steps.get(name, 0):.2f}" for row in rows) + " |")


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
