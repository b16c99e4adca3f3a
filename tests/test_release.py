"""Releasing a cluster from management: after a takeover and a release, the cluster, its hosts and the
metadb are as they were before the takeover (but for the proxyro user, left as it is and reported); the
cluster can then be taken over again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError

from activities.registry import build_activities
from activities.runtime import Runtime
from contracts.engine import release_workflow_id_for
from contracts.errors import ClusterNotFound
from metadb import clusters, tasks
from ob_takeover.client import TakeoverClient
from tests.support.driver import keep_history, log_of, start, wait_for
from tests.support.simulator import Simulation, end_state, sim_runtime, simulation, stored_secret, takeover_body
from tests.test_takeover_e2e import login
from worker import build_worker
from workflows.release import ReleaseCluster


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulation]:
    with simulation(tmp_path, zones=2, servers_per_zone=2) as running:
        yield running


async def take_over(client: Client, task_queue: str, body: dict[str, Any]) -> int:
    handle = await start(client, task_queue, body)
    task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=90)
    failures = [await log_of(handle, s.id) for s in task.subtasks if s.status.value == "FAILED"]
    assert task.status.value == "SUCCESSFUL", failures
    assert task.cluster_id is not None
    return task.cluster_id


def without_calibration(state: dict[str, Any]) -> dict[str, Any]:
    """The io calibration results are the cluster's own: a release leaves them."""
    state["cluster"].pop("io_calibration")
    return state


async def test_a_release_leaves_cluster_hosts_and_metadb_as_before_the_takeover(
    client: Client, task_queue: str, sim: Simulation, tmp_path: Path
) -> None:
    runtime: Runtime = sim_runtime(tmp_path, sim)
    body = takeover_body(sim, runtime)
    before = without_calibration(end_state(sim, runtime.db))
    takeovers = TakeoverClient(client, task_queue, db=runtime.db, vault=runtime.vault)
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        cluster_id = await take_over(client, task_queue, body)
        managed = without_calibration(end_state(sim, runtime.db))
        assert managed != before
        proxyro = stored_secret(runtime, "obcluster:1:proxyro")
        release = await takeovers.release(cluster_id)
        assert release.workflow_id == release_workflow_id_for(sim.address, sim.sql_port)
        task = await release.result()
        assert (task.name, task.status.value) == ("Move out OB cluster", "SUCCESSFUL")
        await keep_history(release.handle, "release_2x2_cluster_target")
        logs = "\n".join([await release.subtask_log(s.id) for s in task.subtasks])
        released = without_calibration(end_state(sim, runtime.db))
        # The proxyro user stays with its password, as the release's report says.
        assert "proxyro is left as it is on the cluster; its password stays in the password box" in logs
        assert released["cluster"]["users"].pop("proxyro") == {"host": "%", "grants": ["SELECT ON oceanbase.*"]}
        assert login(sim, "proxyro@sys", proxyro)
        (kept,) = [c for c in released["metadb"]["credentials"] if c["name"] == "obcluster:1:proxyro"]
        released["metadb"]["credentials"].remove(kept)
        assert released == before
        # Under management again, from the start; proxyro keeps its password (OBProxy goes on logging in).
        again = await take_over(client, task_queue, body)
        assert again != cluster_id
        assert without_calibration(end_state(sim, runtime.db)) == managed
        assert login(sim, "proxyro@sys", proxyro)


async def test_a_release_touches_nothing_when_another_cluster_answers(
    client: Client, task_queue: str, sim: Simulation, tmp_path: Path
) -> None:
    """The managed cluster's record points at an endpoint where another cluster now answers (same root
    password): the release stops at "Prepare move out cluster" and changes nothing there."""
    runtime: Runtime = sim_runtime(tmp_path, sim)
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        cluster_id = await take_over(client, task_queue, takeover_body(sim, runtime))
        sim.call("PUT", "/parameters/cluster", {"value": "othercluster"})
        before = without_calibration(end_state(sim, runtime.db))
        takeovers = TakeoverClient(client, task_queue, db=runtime.db, vault=runtime.vault)
        release = await takeovers.release(cluster_id)
        task = await wait_for(release.handle, lambda t: t.status.value != "RUNNING", timeout=60)
        assert task.status.value == "FAILED"
        (failed,) = [s for s in task.subtasks if s.status.value == "FAILED"]
        assert failed.name == "Prepare move out cluster"
        assert "is othercluster:1, not the managed obcluster:1" in await release.subtask_log(failed.id)
        await release.abort()  # the operator stops it: the cluster lock is released
        with pytest.raises(WorkflowFailureError):
            await release.result()
    assert without_calibration(end_state(sim, runtime.db)) == before


async def test_a_release_is_refused_for_a_cluster_not_under_management(
    client: Client, task_queue: str, sim: Simulation, tmp_path: Path
) -> None:
    runtime: Runtime = sim_runtime(tmp_path, sim)
    takeovers = TakeoverClient(client, task_queue, db=runtime.db, vault=runtime.vault)
    with pytest.raises(ClusterNotFound, match="cluster 4242 does not exist"):
        await takeovers.release(4242)
    assert tasks.list_tasks(runtime.db) == []  # refused before anything was recorded or started
    # A release started without the client (a bare `temporal workflow start`) is refused by the workflow.
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await client.start_workflow(
            ReleaseCluster.run, {"clusterId": 4242}, id=release_workflow_id_for("127.0.0.1", 1), task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    assert "no managed cluster 4242" in str(info.value.cause)
    assert clusters.get_cluster(runtime.db, 4242) is None
