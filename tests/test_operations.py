"""Operator operations on a real Temporal server: OCP's rules, enforced and visible in the task JSON."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError, CancelledError, WorkflowAlreadyStartedError

from contracts.engine import workflow_id_for
from tests.support.driver import failed, keep_history, log_of, named, refusal, start, task_of, update, wait_for
from tests.support.fakes import FakeCluster, make_topology


async def test_failed_subtask_retried_by_operator_then_task_succeeds(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    fake.fail("create_default_user")
    async with running_worker(fake):
        handle = await start(client, task_queue)
        task = await wait_for(handle, failed)
        (subtask,) = named(task, "Create default user")
        assert subtask.status.value == "FAILED"
        # Downstream subtasks wait; the task waits for the operator.
        assert named(task, "Register config url")[0].status.value == "PENDING"
        log = await log_of(handle, subtask.id)
        assert log.startswith("############{EXECUTE}{")
        assert "injected failure of create_default_user" in log
        after = await update(handle, "retry_subtask", subtask.id)
        retried = next(s for s in after.subtasks if s.id == subtask.id)
        assert retried.run_time == 2 and retried.operation.value == "RETRY"
        result = await handle.result()
        await keep_history(handle, "retry_subtask")
        log = await log_of(handle, subtask.id)
    assert result.status.value == "SUCCESSFUL"
    assert fake.names().count("create_default_user") == 2
    assert log.count("############{EXECUTE}") == 1 and log.count("############{RETRY}") == 1
    description = await handle.describe()
    attributes = description.typed_search_attributes
    assert attributes.get(SearchAttributeKey.for_keyword("ObTaskStatus")) == "SUCCESSFUL"
    assert attributes.get(SearchAttributeKey.for_keyword("ObClusterName")) == "obcluster"
    assert attributes.get(SearchAttributeKey.for_keyword("ObClusterAddress")) == "127.0.0.1:2881"


async def test_failed_subtask_skipped_and_downstream_continues(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    fake.fail("register_config_url")
    async with running_worker(fake):
        handle = await start(client, task_queue)
        task = await wait_for(handle, failed)
        (subtask,) = named(task, "Register config url")
        await update(handle, "skip_subtask", subtask.id)
        result = await handle.result()
        await keep_history(handle, "skip_subtask")
    skipped = next(s for s in result.subtasks if s.id == subtask.id)
    assert skipped.status.value == "SUCCESSFUL" and skipped.operation.value == "SKIP"
    assert result.status.value == "SUCCESSFUL"
    assert fake.names().count("register_config_url") == 1


async def test_skip_refused_for_prohibit_skip_subtask(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    fake.fail("update_cluster_status")
    async with running_worker(fake):
        handle = await start(client, task_queue)
        task = await wait_for(handle, failed)
        (subtask,) = named(task, "Update OB cluster status")
        assert subtask.prohibit_skip
        message = await refusal(handle, "skip_subtask", subtask.id)
        assert message == f"subtask {subtask.id} (Update OB cluster status) must not be skipped (prohibitSkip)"
        ok = named(task, "Sync cluster info")[0]
        message = await refusal(handle, "skip_subtask", ok.id)
        assert message == f"subtask {ok.id} is SUCCESSFUL; only a FAILED subtask can be skipped"
        assert "has no subtask 1" in await refusal(handle, "retry_subtask", 1)
        await update(handle, "retry")
        result = await handle.result()
    assert result.status.value == "SUCCESSFUL"


async def test_rollback_runs_compensations_in_reverse_and_releases_lock(
    client: Client, task_queue: str, running_worker: Any
) -> None:
    fake = FakeCluster(topology=make_topology(zones=3, servers_per_zone=1))
    fake.fail("sync_cluster_info")
    async with running_worker(fake):
        handle = await start(client, task_queue)
        await wait_for(handle, failed)
        await update(handle, "rollback")
        result = await handle.result()
        await keep_history(handle, "rollback")
    compensations = fake.names("ROLLBACK")
    # Reverse graph order; fan-out groups (3 hosts) in any order inside their stage.
    stages = list(dict.fromkeys(compensations))
    assert stages == [
        "remove_cluster_info",
        "deactivate_agent_modules",
        "restore_agent_config",
        "detach_cluster_attributes",
        "remove_server_process_info",
        "remove_root_service_list",
        "restore_config_url",
        "drop_default_user",
        "unreserve_hosts",
        "remove_cluster_record",
        "release_cluster_lock",
    ]
    assert compensations.count("deactivate_agent_modules") == 3
    assert compensations[-1] == "release_cluster_lock"
    assert result.operation.value == "ROLLBACK"
    assert result.status.value == "SUCCESSFUL"
    assert all(s.status.value == "PENDING" for s in result.subtasks)
    description = await handle.describe()
    assert description.typed_search_attributes.get(SearchAttributeKey.for_keyword("ObTaskStatus")) == "ROLLED_BACK"


async def test_rollback_refused_once_proxyro_password_was_set(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    fake.fail("update_observer_status")
    async with running_worker(fake):
        handle = await start(client, task_queue)
        task = await wait_for(handle, failed)
        assert task.prohibit_rollback
        message = await refusal(handle, "rollback")
        proxyro = named(task, "Set proxyro password to sys tenant")[0]
        assert message == (
            f"task {task.id} cannot be rolled back: subtask {proxyro.id} (Set proxyro password to "
            "sys tenant) has run and cannot be undone (prohibitRollback)"
        )
        await update(handle, "retry")
        result = await handle.result()
        await keep_history(handle, "retry_refused_rollback")
    assert result.status.value == "SUCCESSFUL"
    assert fake.names("ROLLBACK") == []


async def test_failed_branch_does_not_cancel_siblings(client: Client, task_queue: str, running_worker: Any) -> None:
    fake = FakeCluster(topology=make_topology(zones=3, servers_per_zone=2))
    fake.fail("run_io_calibration", "127.0.2.2:2882")
    async with running_worker(fake):
        handle = await start(client, task_queue)
        task = await wait_for(handle, failed)
        io = named(task, "Run io calibration")
        assert [s.status.value for s in io].count("SUCCESSFUL") == 5
        (bad,) = [s for s in io if s.status.value == "FAILED"]
        assert bad.node == "127.0.2.2:2882"
        assert named(task, "Record root service list")[0].status.value == "PENDING"
        log = await log_of(handle, bad.id)
        assert "127.0.2.2:2882: injected failure of run_io_calibration" in log
        await update(handle, "retry")
        assert (await handle.result()).status.value == "SUCCESSFUL"


async def test_cancel_running_subtask_then_retry(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    release = fake.block("reserve_hosts")
    async with running_worker(fake):
        handle = await start(client, task_queue)
        task = await wait_for(handle, lambda t: named(t, "Reserve host")[0].status.value == "RUNNING")
        (subtask,) = named(task, "Reserve host")
        message = await refusal(handle, "cancel_subtask", named(task, "Create default user")[0].id)
        assert "only a RUNNING subtask can be cancelled" in message
        after = await update(handle, "cancel_subtask", subtask.id)
        cancelled = next(s for s in after.subtasks if s.id == subtask.id)
        assert cancelled.status.value == "FAILED" and cancelled.operation.value == "CANCEL"
        assert after.status.value == "FAILED"
        log = await log_of(handle, subtask.id)
        assert "############{CANCEL}" in log and "cancelled by the operator" in log
        release.set()
        await update(handle, "retry_subtask", subtask.id)
        result = await handle.result()
        await keep_history(handle, "cancel_subtask")
    assert result.status.value == "SUCCESSFUL"
    assert fake.names().count("reserve_hosts") == 2


async def test_abort_stops_work_and_releases_lock(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    fake.block("create_default_user")
    async with running_worker(fake):
        handle = await start(client, task_queue)
        await wait_for(handle, lambda t: named(t, "Create default user")[0].status.value == "RUNNING")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        await keep_history(handle, "abort")
        assert isinstance(info.value.cause, CancelledError)
        task = await task_of(handle)
    assert fake.names()[-1] == "release_cluster_lock"
    assert fake.calls[-1].operation == "CANCEL"
    assert named(task, "Create default user")[0].status.value == "FAILED"
    assert fake.running == 0
    description = await handle.describe()
    assert description.typed_search_attributes.get(SearchAttributeKey.for_keyword("ObTaskStatus")) == "ABORTED"


async def test_second_takeover_of_same_endpoint_is_refused(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    fake.fail("reserve_hosts")
    workflow_id = workflow_id_for("127.0.0.1", 2881) + f"-{uuid.uuid4().hex[:6]}"
    async with running_worker(fake):
        handle = await start(client, task_queue, workflow_id=workflow_id)
        await wait_for(handle, failed)
        with pytest.raises(WorkflowAlreadyStartedError):
            await start(client, task_queue, workflow_id=workflow_id)
        await handle.terminate("test over")
    assert fake.names().count("acquire_cluster_lock") == 1


async def test_invalid_body_fails_at_once_listing_fields(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    body = {"rootSysPassword": "", "address": "bad host!", "port": 70000, "connectionMode": "proxy"}
    async with running_worker(fake):
        handle = await start(client, task_queue, body=body)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidRequest" and cause.non_retryable
    for field in ("rootSysPassword", "address", "port", "clusterName"):
        assert f"{field}: " in cause.message
    assert fake.calls == []


async def test_unreachable_cluster_fails_without_running_a_subtask(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    fake.discovery_error = ApplicationError(
        "127.0.0.1:2881: login as root@sys refused (1045): check rootSysPassword",
        type="BadCredentials",
        non_retryable=True,
    )
    async with running_worker(fake):
        handle = await start(client, task_queue)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "BadCredentials"
    assert cause.message == (
        "cannot take over 127.0.0.1:2881: [BadCredentials] 127.0.0.1:2881: login as root@sys "
        "refused (1045): check rootSysPassword"
    )
    assert fake.calls == []


async def test_subtask_past_its_timeout_fails(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    # "Prepare take over cluster" has 30 s; scaled by 0.01 the floor of 3 s applies.
    fake.delays["prepare_takeover"] = 5
    async with running_worker(fake):
        handle = await start(client, task_queue)
        task = await wait_for(handle, failed)
        (subtask,) = named(task, "Prepare take over cluster")
        log = await log_of(handle, subtask.id)
        assert "FAILED: did not finish within its timeout (3 s)" in log, log
        fake.delays.pop("prepare_takeover")
        await update(handle, "retry")
        assert (await handle.result()).status.value == "SUCCESSFUL"


async def test_at_most_ten_subtasks_run_at_once(client: Client, task_queue: str, running_worker: Any) -> None:
    fake = FakeCluster(topology=make_topology(zones=3, servers_per_zone=10))
    fake.delays["run_io_calibration"] = 0.3
    async with running_worker(fake):
        handle = await start(client, task_queue)
        seen_ready = await wait_for(
            handle, lambda t: any(s.status.value == "READY" for s in named(t, "Run io calibration"))
        )
        running = [s for s in seen_ready.subtasks if s.status.value == "RUNNING"]
        assert len(running) <= 10
        result = await handle.result()
    assert result.status.value == "SUCCESSFUL"
    assert fake.max_running == 10
