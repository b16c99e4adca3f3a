"""The takeover engine on a real Temporal server, with stand-in activities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from temporalio.client import Client

from tests.support.driver import keep_history, start
from tests.support.fakes import FakeCluster, make_topology

SEED = Path(__file__).resolve().parent / "data" / "ocp-sample-task-response.json"


def chain(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Subtasks walked from the one without upstreams along their downstreams (one-server chain)."""
    by_id = {s["id"]: s for s in task["subtasks"]}
    current = next(s for s in task["subtasks"] if not s["upstreams"])
    walked = [current]
    while current["downstreams"]:
        (next_id,) = current["downstreams"]
        current = by_id[next_id]
        walked.append(current)
    return walked


async def test_one_server_task_json_matches_ocp_sample(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    async with running_worker(fake):
        handle = await start(client, task_queue)
        result = await handle.result()
    ours = result.model_dump(mode="json")
    sample = json.loads(SEED.read_text())["data"]
    assert len(ours["subtasks"]) == len(sample["subtasks"]) == 26
    for mine, theirs in zip(chain(ours), chain(sample), strict=True):
        for key in ("name", "description", "timeout", "parallelIdx", "nodeType"):
            assert mine[key] == theirs[key], (key, mine, theirs)
        assert len(mine["upstreams"]) == len(theirs["upstreams"])
        assert len(mine["downstreams"]) == len(theirs["downstreams"])
    assert set(sample) <= set(ours)
    assert set(sample["subtasks"][0]) <= set(ours["subtasks"][0])
    assert ours["status"] == "SUCCESSFUL"
    assert ours["name"] == "Take over primary OB cluster"
    assert ours["clusterId"] == 5000034
    assert ours["type"] == "MANUAL" and ours["taskDefinitionId"] == -1
    assert all(s["status"] == "SUCCESSFUL" and s["runTime"] == 1 for s in ours["subtasks"])
    assert ours["finishTime"] is not None and ours["createTime"] == ours["startTime"]
    assert all(s["createTime"] == ours["createTime"] for s in ours["subtasks"])
    assert ours["subtasks"][0]["upstreams"] == []
    # Every subtask with work ran once, in the table's order.
    assert fake.names()[:5] == [
        "acquire_cluster_lock",
        "prepare_takeover",
        "reserve_hosts",
        "create_default_user",
        "register_config_url",
    ]
    assert fake.names()[-1] == "release_cluster_lock"
    assert len(fake.calls) == 20


async def test_three_zones_two_servers_fan_out(client: Client, task_queue: str, running_worker: Any) -> None:
    fake = FakeCluster(topology=make_topology(zones=3, servers_per_zone=2))
    async with running_worker(fake):
        handle = await start(client, task_queue)
        result = await handle.result()
        await keep_history(handle, "success_3x2_cluster_target")
    subtasks = result.subtasks
    by_name: dict[str, list[Any]] = {}
    for subtask in subtasks:
        by_name.setdefault(subtask.name, []).append(subtask)
    assert len(by_name["Run io calibration"]) == 6
    assert len(by_name["Update server process info"]) == 6
    assert len(by_name["Update observer status"]) == 6
    assert len(by_name["Refresh ocp agent config"]) == 6
    assert len(by_name["Active agent modules"]) == 6
    assert len(by_name["Update zone status"]) == 3
    assert len(by_name["Wait node"]) == 6
    assert [s.parallel_idx for s in by_name["Run io calibration"]] == list(range(6))
    assert sorted(s.node for s in by_name["Update zone status"]) == ["zone1", "zone2", "zone3"]
    # The io calibration group hangs off "Register config url" and joins in one Wait node.
    register = by_name["Register config url"][0]
    assert register.downstreams == [s.id for s in by_name["Run io calibration"]]
    wait = next(s for s in subtasks if s.id == by_name["Run io calibration"][0].downstreams[0])
    assert wait.name == "Wait node" and len(wait.upstreams) == 6
    assert len(subtasks) == 14 + 6 * 5 + 3 + 6
    assert result.status.value == "SUCCESSFUL"
