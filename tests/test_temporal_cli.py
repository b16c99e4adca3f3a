"""The README's `temporal` CLI commands work against the workflow: start, query, update."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from contracts.settings import load_settings
from metadb.db import Database
from metadb.migrate import migrate
from ob_takeover.codec import EncryptionCodec, ReadableFailureConverter, data_converter, load_codec_keys
from ob_takeover.service import create_codec_app, serve
from tests.conftest import binary
from tests.support.driver import failed, wait_for
from tests.support.fakes import FakeCluster
from tests.support.mariadb import free_port
from workflows.takeover import TakeOverCluster


@pytest.fixture
async def codec_endpoint(tmp_path: Path) -> AsyncIterator[str]:
    """The project's HTTP service with its codec server, as `ob-takeover serve` runs it."""
    db = Database(f"sqlite:///{tmp_path / 'metadb.sqlite'}")
    migrate(db)
    port = free_port()
    runner = await serve(create_codec_app(EncryptionCodec(load_codec_keys(load_settings()))), "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}/codec"
    await runner.cleanup()


async def temporal(client: Client, *args: str, codec: str | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        binary("temporal"),
        *args,
        *(["--codec-endpoint", codec] if codec else []),
        "--address",
        client.service_client.config.target_host,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_start_query_and_update_with_the_temporal_cli(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster, codec_endpoint: str
) -> None:
    fake.fail("sync_tenant_info")
    workflow_id = f"takeover-127.0.0.1-2881-{uuid.uuid4().hex[:6]}"
    body = {"rootSysPassword": "S3cret!pw", "address": "127.0.0.1", "port": 2881}
    async with running_worker(fake):
        code, output = await temporal(
            client,
            "workflow", "start", "--type", "TakeOverCluster", "--task-queue", task_queue,
            "--workflow-id", workflow_id, "--input", json.dumps(body), codec=codec_endpoint,
        )  # fmt: skip
        assert code == 0, output
        handle = client.get_workflow_handle_for(TakeOverCluster.run, workflow_id)
        # Started through the codec endpoint, the input is stored encrypted.
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
        assert started.metadata["encoding"] == b"binary/encrypted" and b"S3cret" not in started.data
        await wait_for(handle, failed)
        code, output = await temporal(
            client, "workflow", "query", "--workflow-id", workflow_id, "--name", "task", "--output", "json",
            codec=codec_endpoint,
        )  # fmt: skip
        assert code == 0, output
        task = json.loads(output)["queryResult"][0]
        (subtask,) = [s for s in task["subtasks"] if s["name"] == "Sync all tenant information"]
        assert subtask["status"] == "FAILED" and task["status"] == "FAILED"

        code, output = await temporal(
            client, "workflow", "update", "execute", "--workflow-id", workflow_id,
            "--name", "skip_subtask", "--input", json.dumps({"subtaskId": subtask["id"] - 1}), codec=codec_endpoint,
        )  # fmt: skip
        assert code != 0
        assert "only a FAILED subtask can be skipped" in output
        assert "type: OperationRefused, retryable: false" in output

        code, output = await temporal(
            client, "workflow", "update", "execute", "--workflow-id", workflow_id,
            "--name", "retry_subtask", "--input", json.dumps({"subtaskId": subtask["id"]}), codec=codec_endpoint,
        )  # fmt: skip
        assert code == 0, output
        result = await handle.result()
    assert result.status.value == "SUCCESSFUL"


async def test_bad_json_body_from_the_cli_fails_with_invalid_request(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster, codec_endpoint: str
) -> None:
    workflow_id = f"takeover-bad-{uuid.uuid4().hex[:6]}"
    async with running_worker(fake):
        code, output = await temporal(
            client,
            "workflow", "execute", "--type", "TakeOverCluster", "--task-queue", task_queue,
            "--workflow-id", workflow_id, "--input", json.dumps({"address": "10.0.0.1", "port": "x"}),
            codec=codec_endpoint,
        )  # fmt: skip
        assert code != 0 and "Status   FAILED" in output
        # The failure message is encrypted in Temporal; the project's client decodes it.
        with pytest.raises(WorkflowFailureError) as info:
            await client.get_workflow_handle(workflow_id).result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidRequest"
    assert (
        "rootSysPassword: is required unless rootSysCredentialId" in cause.message
        and "port: Input should be a valid integer" in cause.message
    )
    assert fake.calls == []


async def test_the_temporal_cli_says_why_a_takeover_failed_without_the_codec(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster, codec_endpoint: str
) -> None:
    """The CLI does not decode failures: the project's error messages stay readable, stack traces do not."""
    workflow_id = f"takeover-bad-{uuid.uuid4().hex[:6]}"
    async with running_worker(fake):
        await temporal(
            client,
            "workflow", "execute", "--type", "TakeOverCluster", "--task-queue", task_queue,
            "--workflow-id", workflow_id, "--input", json.dumps({"address": "10.0.0.1", "port": "x"}),
            codec=codec_endpoint,
        )  # fmt: skip
    code, output = await temporal(client, "workflow", "describe", "--workflow-id", workflow_id)
    assert code == 0, output
    assert "rootSysPassword: is required unless rootSysCredentialId" in output, output
    assert "Encoded failure" not in output
    # In Temporal's own history, the stack trace is encrypted (under the failure's encoded attributes).
    plain = await Client.connect(client.service_client.config.target_host, namespace=client.namespace)
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    failure = history.events[-1].workflow_execution_failed_event_attributes.failure
    assert failure.application_failure_info.type == "InvalidRequest" and "rootSysPassword" in failure.message
    assert failure.stack_trace == "" and failure.encoded_attributes.metadata["encoding"] == b"binary/encrypted"


@pytest.mark.unit
def test_failures_that_are_not_the_projects_own_stay_encrypted() -> None:
    converter = ReadableFailureConverter()
    payloads = data_converter().payload_converter
    failure = Failure()
    converter.to_failure(ValueError("x' IDENTIFIED BY 'leaked'"), payloads, failure)
    assert failure.message == "Encoded failure" and failure.stack_trace == ""  # both in the encrypted attributes
    assert str(converter.from_failure(failure, payloads)).endswith("x' IDENTIFIED BY 'leaked'")
    failure = Failure()
    converter.to_failure(ApplicationError("login refused", type="BadCredentials"), payloads, failure)
    assert failure.message == "login refused"
