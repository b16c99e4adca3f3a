"""The `ob-takeover` command in a process of its own, as an operator runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    env: dict[str, str], *args: str, stdin: str = "", cwd: Path = ROOT
) -> tuple[int, dict[str, Any] | None, str, str]:
    """`ob-takeover ARGS`: its exit code, its JSON last line (None without one), stdout and stderr."""
    process = subprocess.run(
        [sys.executable, "-c", "from ob_takeover.cli import main; main()", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )
    lines = process.stdout.strip().splitlines()
    last = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return process.returncode, last, process.stdout, process.stderr
