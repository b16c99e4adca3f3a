"""Two takeovers of the same cluster through two endpoints at once: exactly one runs; the other fails
at "Mc lock ob clusters" naming the task that holds the cluster, and nothing else of it runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client

from activities.registry import build_activities
from metadb import hosts
from tests.driver import log_of, named, start, wait_for
from tests.simulator import register_ssh_key, sim_runtime, simulation
from worker import build_worker


async def test_same_cluster_twice_exactly_one_runs(client: Client, task_queue: str, tmp_path: Path) -> None:
    with simulation(tmp_path, zones=1, servers_per_zone=2) as sim:
        runtime = sim_runtime(tmp_path, sim)
        host_info = {
            "hostTypeId": hosts.add_host_type(runtime.db, "t"),
            "credentialId": register_ssh_key(runtime, sim),
            "sshPort": sim.ssh_port,
        }
        bodies = [
            {
                "rootSysPassword": sim.root_password,
                "address": server["address"],
                "port": server["sql_port"],
                "hostInfo": host_info,
            }
            for server in sim.ready["servers"]
        ]
        async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
            handles = await asyncio.gather(*(start(client, task_queue, body) for body in bodies))
            tasks = await asyncio.gather(
                *(wait_for(h, lambda t: t.status.value != "RUNNING", timeout=90) for h in handles)
            )
            statuses = sorted(t.status.value for t in tasks)
            assert statuses == ["FAILED", "SUCCESSFUL"], statuses
            loser_index = [t.status.value for t in tasks].index("FAILED")
            loser, winner = handles[loser_index], handles[1 - loser_index]
            (lock,) = named(tasks[loser_index], "Mc lock ob clusters")
            assert lock.status.value == "FAILED"
            log = await log_of(loser, lock.id)
            assert "[ClusterLocked] cluster obcluster is locked by task" in log and winner.id in log
            # Nothing but the lock ran for the loser.
            assert all(s.status.value == "PENDING" for s in tasks[loser_index].subtasks[1:])
            await loser.cancel()
            await asyncio.sleep(1)
        assert runtime.db.query("SELECT * FROM cluster_locks") == []
        assert [row["status"] for row in runtime.db.query("SELECT status FROM clusters")] == ["RUNNING"]
