"""The README's `temporal` CLI commands work against the workflow: start, query, update."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from temporalio.client import Client

from tests.conftest import binary
from tests.driver import failed, wait_for
from tests.fakes import FakeCluster
from workflows.takeover import TakeOverCluster


async def temporal(client: Client, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        binary("temporal"),
        *args,
        "--address",
        client.service_client.config.target_host,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_start_query_and_update_with_the_temporal_cli(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    fake.fail("sync_tenant_info")
    workflow_id = f"takeover-127.0.0.1-2881-{uuid.uuid4().hex[:6]}"
    body = {"rootSysPassword": "S3cret!pw", "address": "127.0.0.1", "port": 2881}
    async with running_worker(fake):
        code, output = await temporal(
            client,
            "workflow", "start", "--type", "TakeOverCluster", "--task-queue", task_queue,
            "--workflow-id", workflow_id, "--input", json.dumps(body),
        )  # fmt: skip
        assert code == 0, output
        handle = client.get_workflow_handle_for(TakeOverCluster.run, workflow_id)
        await wait_for(handle, failed)
        code, output = await temporal(
            client, "workflow", "query", "--workflow-id", workflow_id, "--name", "task", "--output", "json"
        )
        assert code == 0, output
        task = json.loads(output)["queryResult"][0]
        (subtask,) = [s for s in task["subtasks"] if s["name"] == "Sync all tenant information"]
        assert subtask["status"] == "FAILED" and task["status"] == "FAILED"

        code, output = await temporal(
            client, "workflow", "update", "execute", "--workflow-id", workflow_id,
            "--name", "skip_subtask", "--input", json.dumps({"subtaskId": subtask["id"] - 1}),
        )  # fmt: skip
        assert code != 0
        assert "only a FAILED subtask can be skipped" in output

        code, output = await temporal(
            client, "workflow", "update", "execute", "--workflow-id", workflow_id,
            "--name", "retry_subtask", "--input", json.dumps({"subtaskId": subtask["id"]}),
        )  # fmt: skip
        assert code == 0, output
        result = await handle.result()
    assert result.status.value == "SUCCESSFUL"


async def test_bad_json_body_from_the_cli_fails_with_invalid_request(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    workflow_id = f"takeover-bad-{uuid.uuid4().hex[:6]}"
    async with running_worker(fake):
        code, output = await temporal(
            client,
            "workflow", "execute", "--type", "TakeOverCluster", "--task-queue", task_queue,
            "--workflow-id", workflow_id, "--input", json.dumps({"address": "10.0.0.1", "port": "x"}),
        )  # fmt: skip
    assert code != 0
    assert "invalid takeover request" in output
    assert "rootSysPassword: Field required" in output and "port: Input should be a valid integer" in output
    assert fake.calls == []
