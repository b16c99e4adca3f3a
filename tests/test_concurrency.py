"""Two takeovers of the same cluster through two endpoints at once: exactly one runs; the other fails
at "Mc lock ob clusters" naming the task that holds the cluster, and nothing else of it runs."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from temporalio.client import Client

from activities.registry import build_activities
from metadb import hosts
from tests.driver import log_of, named, start, wait_for
from tests.simulator import many_simulations, register_ssh_key, sim_runtime, simulation
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


async def test_twenty_clusters_taken_over_at_once_on_one_worker(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    with many_simulations(tmp_path, 20) as sims:
        runtime = sim_runtime(tmp_path, sims[0])
        runtime = dataclasses.replace(runtime, known_hosts=str(tmp_path / "known_hosts"))
        host_type = hosts.add_host_type(runtime.db, "t")
        bodies = [
            {
                "rootSysPassword": sim.root_password,
                "address": sim.address,
                "port": sim.sql_port,
                "hostInfo": {
                    "hostTypeId": host_type,
                    "credentialId": register_ssh_key(runtime, sim, name=f"key{i}"),
                    "sshPort": sim.ssh_port,
                },
            }
            for i, sim in enumerate(sims)
        ]
        async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
            handles = await asyncio.gather(*(start(client, task_queue, body) for body in bodies))
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=240)
        assert [r.status.value for r in results] == ["SUCCESSFUL"] * 20
        # Twenty different clusters under management, each with its own monitor user; no lock left.
        managed = runtime.db.query("SELECT name, ob_cluster_id, status FROM clusters ORDER BY ob_cluster_id")
        assert [(r["name"], r["ob_cluster_id"], r["status"]) for r in managed] == [
            (f"obcluster{i}", i + 1, "RUNNING") for i in range(20)
        ]
        assert all("ocp_monitor" in sim.state()["users"] for sim in sims)
        assert runtime.db.query("SELECT * FROM cluster_locks") == []
