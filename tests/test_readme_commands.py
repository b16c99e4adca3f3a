"""The operator's guide's "Running it", "Start a takeover with the `temporal` CLI" and "Release a cluster from
management" sections (docs/operators-guide.md), run as written.

The command blocks marked `<!-- run:NAME -->` are read from the pages below and run with bash, in order, in a
fresh directory (with `worker.py` linked in), so the docs cannot drift from what works. Only what would
collide with other servers on this machine is replaced: the Temporal and HTTP ports and the simulator's
loopback block. A command whose comment is a JSON object must print an object with those values last.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.mariadb import free_port

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- run:(\w+) -->\n```bash\n(.*?)```", re.DOTALL)
# The pages whose marked blocks are run; a block's name is unique across them.
PAGES = (ROOT / "docs" / "operators-guide.md",)


def documented_blocks() -> dict[str, list[str]]:
    """Each marked block's commands, continuation lines joined."""
    blocks: dict[str, list[str]] = {}
    for name, text in BLOCK.findall("\n".join(page.read_text() for page in PAGES)):
        assert name not in blocks, f"two blocks are marked run:{name}"
        joined = re.sub(r"\\\n\s*", "", text)
        # A JSON value spread over lines inside quotes stays one command.
        commands: list[str] = []
        for line in joined.splitlines():
            if commands and commands[-1].count("'") % 2 == 1:
                commands[-1] += "\n" + line
            elif line.strip() and not line.strip().startswith("#"):
                commands.append(line)
        blocks[name] = commands
    return blocks


def expected_output(command: str) -> dict[str, object] | None:
    match = re.search(r"\s#\s*(\{.*\})\s*$", command)
    return json.loads(match.group(1)) if match else None


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f} s"
        time.sleep(0.2)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Shell:
    """Runs documented commands in one directory with one environment; `&` commands run on in the background."""

    def __init__(self, directory: Path, env: dict[str, str], replace: dict[str, str], ports: tuple[int, int]) -> None:
        self.directory = directory
        self.env = env
        self.replace = replace
        self.temporal, self.http = ports
        self.background: list[subprocess.Popen[bytes]] = []

    def adapt(self, command: str) -> str:
        for old, new in self.replace.items():
            command = command.replace(old, new)
        return command

    def run(self, command: str) -> tuple[int, str, str]:
        command = self.adapt(command)
        if command.rstrip().endswith("&"):
            log = (self.directory / f"background-{len(self.background)}.log").open("wb")
            process = subprocess.Popen(
                ["bash", "-c", command.rstrip().rstrip("&")], cwd=self.directory, env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            self.background.append(process)
            return 0, "", ""
        done = subprocess.run(
            ["bash", "-c", command], cwd=self.directory, env=self.env, capture_output=True, text=True, timeout=120
        )
        return done.returncode, done.stdout, done.stderr

    def log(self, index: int) -> str:
        return (self.directory / f"background-{index}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in reversed(self.background):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    temporal, ui, http, codec = free_port(), free_port(), free_port(), free_port()
    block = f"127.{random.randint(64, 250)}.{random.randint(1, 254)}"
    (tmp_path / "worker.py").symlink_to(ROOT / "worker.py")
    (tmp_path / "root-password.txt").write_text("Readme#Root-1\n")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}",
    }
    replace = {
        "temporal server start-dev": f"temporal server start-dev --port {temporal} --ui-port {ui} --log-level error",
        "127.0.0.1:8080": f"127.0.0.1:{http}",
        "127.0.0.1:8081": f"127.0.0.1:{codec}",
        "127.0.20.2": f"{block}.2",
    }
    running = Shell(tmp_path, env, replace, (temporal, http))
    try:
        yield running
    finally:
        running.stop()


def run_as_written(shell: Shell, commands: list[str]) -> None:
    """Each command succeeds and, when its comment is a JSON object, prints those values last."""
    for command in commands:
        code, out, err = shell.run(command)
        assert code == 0, f"{command}\n{out}\n{err}"
        wanted = expected_output(command)
        if wanted is not None:
            printed = json.loads(out.strip().splitlines()[-1])
            assert {k: printed.get(k) for k in wanted} == wanted, (command, printed)


def test_the_operators_guide_takes_a_cluster_over_as_written(shell: Shell) -> None:
    blocks = documented_blocks()
    assert set(blocks) >= {"servers", "cluster", "register", "takeover", "release"}, blocks
    for command in blocks["servers"]:
        shell.run(command)
    wait_until(lambda: listening(shell.temporal) and listening(shell.http), "Temporal and the service listening")
    for command in blocks["cluster"]:
        shell.run(command)
    wait_until(lambda: "READY " in shell.log(2), "the simulator's READY line")
    wait_until(lambda: "worker polling task queue ob-takeover" in shell.log(3), "the worker polling")
    for name in ("register", "takeover"):
        run_as_written(shell, [c for c in blocks[name] if not c.startswith("ob-takeover status")])
    (status,) = [c for c in blocks["takeover"] if c.startswith("ob-takeover status")]
    codes: list[int] = []

    def ended() -> bool:
        codes.append(shell.run(status)[0])
        return codes[-1] != 3

    wait_until(ended, "the takeover's end", timeout=90)
    code, out, err = shell.run(status)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["status"] == "SUCCESSFUL", out + err
    assert set(codes) <= {0, 3}, codes
    # Then out of management again, as the guide's release section says.
    run_as_written(shell, blocks["release"])
    assert "Traceback" not in shell.log(2) + shell.log(3)
