"""A fleet takeover on the engine: every cluster is taken over as its own takeover workflow, at most
`maxConcurrent` at a time; a FAILED member waits for its operator without holding the others back; a
cluster already being taken over is not started twice; the fleet continues as new to bound its history."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from contracts.engine import MEMBER_UPDATE_SIGNAL, workflow_id_for
from contracts.fleet import MemberStatus, MemberUpdate, parse_fleet_request
from contracts.request import InvalidRequest
from ob_takeover.client import Fleet, TakeoverClient
from tests.support.driver import BODY, keep_history, start, wait_for
from tests.support.fakes import FakeCluster
from tests.test_client_and_operator_cli import cli


def fleet_of(count: int, max_concurrent: int) -> tuple[dict[str, Any], list[str]]:
    """A fleet body of `count` clusters with endpoints of their own (workflow ids are per endpoint)."""
    port = 20000 + uuid.uuid4().int % 40000
    clusters = [{**BODY, "address": f"127.0.9.{number + 1}", "port": port} for number in range(count)]
    return {"requests": clusters, "maxConcurrent": max_concurrent}, [
        workflow_id_for(c["address"], port) for c in clusters
    ]


async def wait_fleet(fleet: Fleet, predicate: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    view = None
    while time.monotonic() < deadline:
        try:
            view = await fleet.view()
        except Exception:  # the fleet's first workflow task has not run yet
            view = None
        if view is not None and predicate(view):
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"fleet condition not reached: {view.counts if view else 'no table'}")


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


async def test_a_fleet_takes_every_cluster_over_a_bounded_number_at_a_time(
    client: Client, task_queue: str, running_worker: Any
) -> None:
    fake = FakeCluster()
    fake.delays["run_io_calibration"] = 0.3
    fake.fail("register_config_url", times=1)  # the first member to get there FAILS and waits for its operator
    body, workflow_ids = fleet_of(6, max_concurrent=2)
    takeovers = TakeoverClient(client, task_queue)
    async with running_worker(fake):
        fleet = await takeovers.start_fleet(body, f"test-{uuid.uuid4().hex[:8]}")
        view = await wait_fleet(fleet, lambda v: v.counts.get("FAILED") == 1 and v.counts.get("SUCCESSFUL") == 5)
        # The FAILED member names its task and subtask; the other five went on without it.
        broken = next(m for m in view.members if m.status is MemberStatus.FAILED)
        assert broken.failed_subtask == "Register config url"
        assert broken.task_id is not None and "injected failure of register_config_url" in (broken.message or "")
        assert (await fleet.describe()).status is WorkflowExecutionStatus.RUNNING
        # The operator retries the member on its own workflow, as any takeover; the fleet then ends.
        member = takeovers.get(broken.workflow_id)
        await member.retry()
        result = await asyncio.wait_for(fleet.result(), 30)
        await keep_history(fleet.handle, "fleet_6_prepared_members")
        await keep_history(member.handle, "fleet_member_prepared_retried")
    assert [m.status for m in result.members] == [MemberStatus.SUCCESSFUL] * 6
    assert [m.workflow_id for m in result.members] == workflow_ids
    assert all(m.task_id and m.cluster_name == "obcluster" for m in result.members)
    # Every member was prepared as any takeover is: its task id from the preparation, and its workflow input
    # names the password box's credential instead of carrying the fleet file's password.
    assert sorted(m.task_id for m in result.members if m.task_id) == sorted(fake.prepared)
    first = await anext(aiter(client.get_workflow_handle(workflow_ids[0]).fetch_history_events()))
    (member_body,) = await client.data_converter.decode(
        first.workflow_execution_started_event_attributes.input.payloads
    )
    assert "rootSysPassword" not in member_body and member_body["rootSysCredentialId"] in fake.prepared
    spans = []
    for workflow_id in workflow_ids:
        description = await client.get_workflow_handle(workflow_id).describe()
        assert description.parent_id == fleet.workflow_id
        assert description.close_time is not None
        if workflow_id != broken.workflow_id:
            task = await takeovers.get(workflow_id).result()
            assert task.finish_time is not None
            finished = datetime.fromisoformat(task.finish_time).timestamp()
            spans.append((description.start_time.timestamp(), finished))
    # From its start to its task's end, never more than two of the others worked at once, and the FAILED
    # one gave its slot back while it waited: two of the others overlap.
    assert max_overlap(spans) == 2


async def test_a_cluster_being_taken_over_or_managed_already_is_not_started_again(
    client: Client, task_queue: str, running_worker: Any
) -> None:
    fake = FakeCluster()
    blocked = fake.block("prepare_takeover")
    body, workflow_ids = fleet_of(4, max_concurrent=4)
    fake.managed = {(body["requests"][3]["address"], body["requests"][3]["port"])}  # taken over before
    takeovers = TakeoverClient(client, task_queue)
    async with running_worker(fake):
        single = await start(client, task_queue, body["requests"][1], workflow_id=workflow_ids[1])
        await wait_for(single, lambda task: task.status.value == "RUNNING")
        fleet = await takeovers.start_fleet(body, f"test-{uuid.uuid4().hex[:8]}")
        view = await wait_fleet(fleet, lambda v: v.members[1].status is MemberStatus.NOT_STARTED)
        assert "already running" in (view.members[1].message or "")
        blocked.set()
        result = await asyncio.wait_for(fleet.result(), 30)
        await single.result()
    # The member that could not start had been prepared; its preparation was undone. The managed one never was.
    assert len(fake.prepared) == 3 and len(fake.discarded) == 1
    started = {m.task_id for m in result.members if m.status is MemberStatus.SUCCESSFUL}
    assert started | set(fake.discarded) == set(fake.prepared)
    assert [m.status for m in result.members] == [
        MemberStatus.SUCCESSFUL,
        MemberStatus.NOT_STARTED,
        MemberStatus.SUCCESSFUL,
        MemberStatus.NOT_STARTED,
    ]
    assert (result.members[3].message or "").startswith("already managed here: cluster at 127.0.9.4")
    # Neither was started by the fleet: the locks taken are the two members' and the single takeover's.
    assert fake.names().count("acquire_cluster_lock") == 3
    # The single takeover was not touched by the fleet: it has no parent.
    assert (await single.describe()).parent_id is None


async def test_a_member_that_cannot_start_its_task_is_reported_with_the_reason(
    client: Client, task_queue: str, running_worker: Any
) -> None:
    fake = FakeCluster()
    body, _ = fleet_of(2, max_concurrent=2)
    body["requests"][0]["port"] = body["requests"][1]["port"] + 1  # its own port, then an unreachable cluster
    from temporalio.exceptions import ApplicationError

    fake.discovery_error = ApplicationError(
        "Access denied for user root@sys", type="BadCredentials", non_retryable=True
    )
    async with running_worker(fake):
        fleet = await TakeoverClient(client, task_queue).start_fleet(body, f"test-{uuid.uuid4().hex[:8]}")
        result = await asyncio.wait_for(fleet.result(), 30)
    assert [m.status for m in result.members] == [MemberStatus.NOT_STARTED] * 2
    assert all("Access denied" in (m.message or "") for m in result.members)


async def test_a_long_fleet_continues_as_new_and_loses_no_member(
    client: Client, task_queue: str, running_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OB_TAKEOVER_FLEET_HISTORY_EVENTS", "100")
    fake = FakeCluster()
    fake.delays["run_io_calibration"] = 0.2
    body, workflow_ids = fleet_of(10, max_concurrent=3)
    async with running_worker(fake):
        fleet = await TakeoverClient(client, task_queue).start_fleet(body, f"test-{uuid.uuid4().hex[:8]}")
        result = await asyncio.wait_for(fleet.result(), 60)
    assert result.run > 1
    assert [m.status for m in result.members] == [MemberStatus.SUCCESSFUL] * 10
    assert [m.workflow_id for m in result.members] == workflow_ids
    assert all(m.task_id is not None for m in result.members)


async def test_a_member_that_ends_without_telling_the_fleet_is_found(
    client: Client, task_queue: str, running_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FAILED member started by an earlier run of the fleet is terminated (it sends nothing): the fleet's
    check of its members' workflows finds it, and the fleet ends; a forged SUCCESSFUL does not end it."""
    monkeypatch.setenv("OB_TAKEOVER_FLEET_HISTORY_EVENTS", "100")
    monkeypatch.setenv("OB_TAKEOVER_TIMEOUT_SCALE", "0.05")  # members are checked every 3 s
    fake = FakeCluster()
    fake.fail("register_config_url", times=1)
    body, _ = fleet_of(8, max_concurrent=8)
    async with running_worker(fake):
        fleet = await TakeoverClient(client, task_queue).start_fleet(body, f"test-{uuid.uuid4().hex[:8]}")
        view = await wait_fleet(fleet, lambda v: v.run > 1 and v.counts.get("SUCCESSFUL") == 7, timeout=60)
        (stuck,) = [m for m in view.members if m.status is MemberStatus.FAILED]
        forged = MemberUpdate(
            workflow_id=stuck.workflow_id, status=MemberStatus.SUCCESSFUL, seq=99, run_id=stuck.run_id
        )
        await fleet.handle.signal(MEMBER_UPDATE_SIGNAL, forged)
        await asyncio.sleep(4)
        assert (await fleet.describe()).status is WorkflowExecutionStatus.RUNNING
        await client.get_workflow_handle(stuck.workflow_id).terminate("the operator gave up on it")
        result = await asyncio.wait_for(fleet.result(), 30)
    (ended,) = [m for m in result.members if m.workflow_id == stuck.workflow_id]
    assert (ended.status, ended.message) == (MemberStatus.ABORTED, "its workflow was terminated")
    assert sorted(m.status.value for m in result.members) == ["ABORTED"] + ["SUCCESSFUL"] * 7


@pytest.mark.unit
def test_a_fleet_body_names_the_cluster_and_field_of_each_error() -> None:
    body, _ = fleet_of(3, max_concurrent=2)
    body["requests"][1] = {**body["requests"][1], "port": "x", "rootSysPassword": None}
    body["requests"][2] = dict(body["requests"][0])  # the same endpoint twice
    body["maxConcurrent"] = 0
    body["max"] = 3
    with pytest.raises(InvalidRequest) as info:
        parse_fleet_request(body)
    fields = {error.field for error in info.value.errors}
    assert {"requests[1].port", "requests[2]", "maxConcurrent", "max"} <= fields
    assert "S3cret" not in str(info.value)


async def test_fleet_commands_start_from_a_yaml_file_and_show_the_table(
    client: Client, task_queue: str, running_worker: Any, tmp_path: Path
) -> None:
    fake = FakeCluster()
    port = 20000 + uuid.uuid4().int % 40000
    fleet_file = tmp_path / "clusters.yaml"
    fleet_file.write_text(
        "maxConcurrent: 2\n"
        "defaults:\n"
        "  rootSysPassword: S3cret!pw\n"
        "  port: " + str(port) + "\n"
        "requests:\n"
        "  - address: 127.0.8.1\n"
        "  - address: 127.0.8.2\n"
        "  - address: 127.0.8.3\n"
    )
    name = f"cli-{uuid.uuid4().hex[:8]}"
    async with running_worker(fake):
        code, out, text = await cli(
            client, task_queue, "fleet", "start", "--file", str(fleet_file), "--name", name, "--wait"
        )
        assert code == 0, text
        assert out == {"workflowId": f"fleet-{name}", "clusters": 3, "counts": {"SUCCESSFUL": 3}}
        assert "S3cret" not in text
        code, out, text = await cli(client, task_queue, "fleet", "status", name)
    assert code == 0 and out is not None and out["counts"] == {"SUCCESSFUL": 3}, text
    rows = [line.split() for line in text.splitlines() if "takeover-127.0.8." in line]
    assert [(row[1], row[2]) for row in rows] == [("obcluster", "SUCCESSFUL")] * 3
    # A bad file is refused before anything starts, naming the cluster and field.
    fleet_file.write_text("requests:\n  - address: 127.0.8.1\n    port: x\n    rootSysPassword: S3cret!pw\n")
    code, _, text = await cli(client, task_queue, "fleet", "start", "--file", str(fleet_file), "--name", name + "b")
    assert code == 2 and "requests[0].port" in text and "S3cret" not in text, text
    # A file that does not parse is refused by where, never by quoting its lines.
    fleet_file.write_text("requests:\n  - {address: 127.0.8.1, rootSysPassword: 'S3cret!pw\n")
    code, _, text = await cli(client, task_queue, "fleet", "start", "--file", str(fleet_file), "--name", name + "c")
    assert code == 2 and "YAML syntax error at line" in text and "S3cret" not in text, text
    code, _, text = await cli(client, task_queue, "fleet", "status", "nowhere-" + name)
    assert code == 2 and "Traceback" not in text, text
