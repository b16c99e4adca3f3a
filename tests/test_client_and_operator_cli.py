"""The Python client and the operator command against a real Temporal server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from contracts.errors import OperationRefused
from metadb import credentials, tasks
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import MasterKey, Vault
from ob_takeover.client import TakeoverClient
from tests.support.driver import failed, wait_for
from tests.support.fakes import FakeCluster

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def own_metadb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The metadb and master key that starts use, in the test's directory (never the checkout's var/)."""
    monkeypatch.setenv("OB_TAKEOVER_METADB", f"sqlite:///{tmp_path / 'metadb.sqlite'}")
    monkeypatch.setenv("OB_TAKEOVER_MASTER_KEY_FILE", str(tmp_path / "master.key"))


async def test_python_client_start_operate_and_refusals(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster, tmp_path: Path
) -> None:
    fake.fail("register_config_url")
    db = Database(f"sqlite:///{tmp_path / 'metadb.sqlite'}")
    migrate(db)
    vault = Vault(MasterKey.generate())
    takeovers = TakeoverClient(client, task_queue, db=db, vault=vault)
    async with running_worker(fake):
        takeover = await takeovers.start({"rootSysPassword": "pw", "address": "127.0.0.9", "port": 2881})
        assert takeover.workflow_id == "takeover-127.0.0.9-2881"
        # The password went into the password box, owned by the task; the workflow input names it by id.
        (started,) = [e async for e in takeover.handle.fetch_history_events() if e.event_id == 1]
        attributes = started.workflow_execution_started_event_attributes
        (body,) = await client.data_converter.decode(attributes.input.payloads)
        assert "rootSysPassword" not in body
        credential = credentials.get_credential(db, vault, body["rootSysCredentialId"])
        assert credential.secret == "pw" and credential.endpoints == ("127.0.0.9:2881",)
        row = tasks.latest_task_of(db, takeover.workflow_id)
        assert row is not None and row["status"] == "RUNNING" and credential.created_by_task_id == row["task_id"]
        task = await wait_for(takeover.handle, failed)
        (bad,) = [s for s in task.subtasks if s.status.value == "FAILED"]
        with pytest.raises(OperationRefused, match="only a RUNNING subtask can be cancelled"):
            await takeover.cancel_subtask(bad.id)
        assert "injected failure" in await takeover.subtask_log(bad.id)
        after = await takeover.retry_subtask(bad.id)
        assert next(s for s in after.subtasks if s.id == bad.id).run_time == 2
        assert (await takeover.result()).status.value == "SUCCESSFUL"
    with pytest.raises(Exception, match="port"):
        await takeovers.start({"rootSysPassword": "pw", "address": "127.0.0.9", "port": 0})


async def cli(client: Client, task_queue: str, *args: str, stdin: str = "") -> tuple[int, dict[str, Any] | None, str]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "OB_TAKEOVER_TASK_QUEUE": task_queue,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from ob_takeover.cli import main; main()", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT, env=env,
    )  # fmt: skip
    out, err = await process.communicate(stdin.encode())
    lines = out.decode().strip().splitlines()
    last = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return process.returncode or 0, last, out.decode() + err.decode()


async def test_operator_command_start_status_and_operations(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster, tmp_path: Path
) -> None:
    fake.fail("sync_cluster_info")
    async with running_worker(fake):
        code, out, text = await cli(
            client, task_queue, "start", "--address", "127.0.0.8", "--port", "2881", "--password-stdin", "--wait",
            stdin="S3cret!\n",
        )  # fmt: skip
        # Exit codes: 1 for a FAILED task, 0 for a SUCCESSFUL one, 2 for usage, as the README says.
        assert code == 1, text
        assert out is not None and out["workflowId"] == "takeover-127.0.0.8-2881" and out["status"] == "FAILED"
        assert "S3cret" not in text
        code, out, text = await cli(client, task_queue, "status", "takeover-127.0.0.8-2881")
        assert code == 1 and out is not None and out["status"] == "FAILED"
        # The task's id is the one `start` allocated in the metadb, where the task's row is.
        assert f"task {out['taskId']} 'Take over primary OB cluster' cluster 5000034: FAILED" in text
        registry = Database(os.environ["OB_TAKEOVER_METADB"])
        row = tasks.get_task(registry, out["taskId"])
        assert row is not None and row["workflow_id"] == "takeover-127.0.0.8-2881"
        registry.close()
        assert "Sync cluster info" in text and "injected failure of sync_cluster_info" in text
        # Every column starts where its header does, whatever the width of the names and times in it.
        header = next(line for line in text.splitlines() if line.startswith("ID "))
        line = next(line for line in text.splitlines() if "Sync cluster info" in line)
        assert line[header.index("STATUS") :].startswith("FAILED"), (header, line)
        assert line[header.index("NODE") - 1] == " " and line[header.index("START") - 1] == " "
        # The task list shows the task as an operator must see it: FAILED, waiting, not "RUNNING".
        listed_code, listed, listing = await cli(client, task_queue, "tasks")
        assert listed_code == 0 and listed is not None, listing
        assert [(t["workflow"], t["status"]) for t in listed["tasks"]] == [("takeover-127.0.0.8-2881", "FAILED")]
        failed_id = next(
            int(line.split()[0]) for line in text.splitlines() if "Sync cluster info" in line and "FAILED" in line
        )
        code, _, text = await cli(client, task_queue, "skip-subtask", "takeover-127.0.0.8-2881", str(failed_id - 1))
        assert code == 1 and "refused: subtask" in text and "only a FAILED subtask can be skipped" in text
        assert "Traceback" not in text
        code, out, text = await cli(
            client, task_queue, "retry-subtask", "takeover-127.0.0.8-2881", str(failed_id), "--wait"
        )
        assert code == 0 and out is not None and out["status"] == "SUCCESSFUL", text
        picture = tmp_path / "timeline.svg"
        code, _, text = await cli(client, task_queue, "status", "takeover-127.0.0.8-2881", "--timeline", str(picture))
        assert code == 0 and f"timeline written to {picture}" in text
        svg = ElementTree.parse(picture).getroot()
        bars = [
            e
            for e in svg.iter("{http://www.w3.org/2000/svg}rect")
            if e.find("{http://www.w3.org/2000/svg}title") is not None
        ]
        titles = [bar.find("{http://www.w3.org/2000/svg}title").text or "" for bar in bars]  # type: ignore[union-attr]
        assert len(bars) >= 20 and all(": SUCCESSFUL, " in title for title in titles), titles
        assert any(title.startswith("Sync cluster info: SUCCESSFUL") for title in titles)
    code, _, text = await cli(
        client, task_queue, "start", "--address", "bad host", "--port", "1", "--password-stdin", stdin="x\n"
    )
    assert code == 2 and "address: is neither" in text
    code, out, text = await cli(client, task_queue, "tasks", "--status", "SUCCESSFUL")
    assert code == 0 and out is not None and [t["status"] for t in out["tasks"]] == ["SUCCESSFUL"], text
    # A credential id that names nothing is a usage error naming the option's field, and starts nothing.
    code, _, text = await cli(
        client, task_queue, "start", "--address", "127.0.0.7", "--port", "2881", "--root-credential-id", "99"
    )
    assert code == 2 and "rootSysCredentialId: credential 99 does not exist" in text, text
    code, out, _ = await cli(client, task_queue, "tasks")
    assert out is not None and len(out["tasks"]) == 1

    # Errors are one line naming the cause and what to do; a traceback only with --debug.
    code, _, text = await cli(client, task_queue, "status", "takeover-nowhere-1")
    assert code == 2 and text.strip().splitlines() == [
        "ob-takeover: no takeover workflow takeover-nowhere-1; its id is takeover-<address>-<port> "
        "(`temporal workflow list --query \"WorkflowType='TakeOverCluster'\"` lists them)"
    ]
    code, _, text = await cli(client, task_queue, "--debug", "status", "takeover-nowhere-1")
    assert code == 2 and "Traceback" in text


async def test_status_of_a_takeover_that_failed_before_its_task_existed(
    client: Client, task_queue: str, running_worker: Any, fake: FakeCluster
) -> None:
    fake.discovery_error = ApplicationError(
        "login as root@sys refused (1045): check rootSysPassword", type="BadCredentials", non_retryable=True
    )
    async with running_worker(fake):
        code, _, text = await cli(
            client, task_queue, "start", "--address", "127.0.0.7", "--port", "2881", "--password-stdin",
            stdin="wrong\n",
        )  # fmt: skip
        assert code == 0, text
        handle = client.get_workflow_handle("takeover-127.0.0.7-2881")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        code, _, text = await cli(client, task_queue, "status", "takeover-127.0.0.7-2881")
    assert code == 1, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "ob-takeover: takeover takeover-127.0.0.7-2881 failed before its task"
    )
    assert "check rootSysPassword" in lines[0]
