"""Two takeovers of the same cluster through two endpoints at once: exactly one runs; the other fails
at "Mc lock ob clusters" naming the task that holds the cluster, and nothing else of it runs."""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from temporalio.client import Client

from activities import cluster_work
from activities.registry import build_activities
from activities.runtime import Runtime, Work
from contracts.messages import SubtaskInput
from contracts.request import parse_request
from contracts.target import ClusterTarget
from contracts.topology import ServerNode
from metadb import hosts
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import MasterKey, Vault
from tests.support.driver import log_of, named, start, wait_for
from tests.support.simulator import many_simulations, register_ssh_key, sim_runtime, simulation
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


def _calibration_runtime(tmp_path: Path) -> Runtime:
    db = Database(f"sqlite:///{tmp_path / 'metadb.sqlite'}")
    migrate(db)
    return Runtime(db=db, vault=Vault(MasterKey.generate()), poll_interval=0.2)


def _calibration_of(runtime: Runtime, sim: Any, number: int, server: dict[str, Any]) -> Work:
    """The io calibration subtask of one simulated server, as an activity attempt would run it."""
    request = parse_request({"rootSysPassword": sim.root_password, "address": sim.address, "port": sim.sql_port})
    node = ServerNode(ip=server["address"], rpc_port=server["rpc_port"], sql_port=server["sql_port"], zone="z")
    arg = SubtaskInput(
        task_id=1, subtask_id=100 + number, subtask_name="Run io calibration", workflow_id="w",
        operation="EXECUTE", target=ClusterTarget.of_request(request).of_cluster("obcluster", 1), node_kind="SERVER",
        server=node,
    )  # fmt: skip
    return Work(arg=arg, runtime=runtime)


async def test_io_calibrations_that_poll_hold_no_thread(tmp_path: Path) -> None:
    """Eight io calibrations poll at once with two threads in the pool: another subtask still gets a thread
    at once. (Pollers that slept in a thread held both threads for the whole calibration.)"""
    with simulation(tmp_path, zones=1, servers_per_zone=8, hosts=False, extra=["--io-calibration-seconds", "3"]) as sim:
        runtime = _calibration_runtime(tmp_path)
        works = [_calibration_of(runtime, sim, number, server) for number, server in enumerate(sim.ready["servers"])]
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        try:
            calibrations = asyncio.gather(*(cluster_work.run_io_calibration(work) for work in works))
            await asyncio.sleep(1.0)  # every calibration has started and polls
            assert not calibrations.done()
            # Another subtask's blocking call gets a thread well within a second (not after the calibrations).
            await asyncio.wait_for(asyncio.to_thread(lambda: None), 1.0)
            await asyncio.wait_for(calibrations, 30)
        finally:
            for work in works:
                work.close()
            loop.set_default_executor(ThreadPoolExecutor())
    assert all("io calibration READY" in " ".join(work.log) for work in works)


async def test_a_retried_io_calibration_keeps_the_result_an_earlier_attempt_started(tmp_path: Path) -> None:
    """The worker is lost 0.5 s into a 2 s calibration and the next attempt comes after it finished: that
    attempt keeps the result instead of running a new calibration. A new run of the subtask (no progress
    from an earlier attempt) does calibrate again."""
    with simulation(tmp_path, hosts=False, extra=["--io-calibration-seconds", "2"]) as sim:
        runtime = _calibration_runtime(tmp_path)
        server = sim.ready["servers"][0]
        label = f"{server['address']}:{server['rpc_port']}"

        def calibrations_run() -> int:
            statements = sim.state()["statements"].get(label, [])
            return sum("RUN JOB 'io_calibration'" in statement for statement in statements)

        first = _calibration_of(runtime, sim, 0, server)
        lost = asyncio.ensure_future(cluster_work.run_io_calibration(first))
        await asyncio.sleep(0.5)
        lost.cancel()
        await asyncio.gather(lost, return_exceptions=True)
        first.close()
        await asyncio.sleep(2.5)  # the calibration ends while no attempt watches it
        assert sim.state()["io_calibration"][label] == "READY"

        retried = _calibration_of(runtime, sim, 0, server)
        retried.progress = dict(first.progress)  # what the lost attempt's last heartbeat carried
        await asyncio.wait_for(cluster_work.run_io_calibration(retried), 5)
        retried.close()
        assert "its result is kept" in " ".join(retried.log)
        assert calibrations_run() == 1

        again = _calibration_of(runtime, sim, 0, server)
        await asyncio.wait_for(cluster_work.run_io_calibration(again), 10)
        again.close()
        assert "io calibration started" in " ".join(again.log)
        assert calibrations_run() == 2
