"""The README's quick start: the demo takes the simulated cluster over end to end, as a newcomer runs it
(`scripts/demo.sh --exit` without its install step: `python -m ob_takeover.demo --exit`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_takes_its_cluster_over() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OB_TAKEOVER_", "TEMPORAL_"))}
    process = subprocess.run(
        [sys.executable, "-m", "ob_takeover.demo", "--exit"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-3000:]
    assert "'Take over primary OB cluster' cluster 1: SUCCESSFUL" in output, output[-3000:]
    assert "Temporal UI:   http://127.0.0.1:8233" in output
