"""The one-command demo: a takeover end to end on the embedded default.

Starts the Temporal dev server (SQLite file under ./var, search attributes registered, UI with the
codec endpoint), the HTTP service, a simulated 3-zone x 2-server cluster with its hosts, and the
worker; registers the host type and the SSH credential; runs the precheck, takes the cluster over,
prints the task table and the UI address.
Ctrl-C stops everything. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.engine import workflow_id_for
from contracts.messages import PrecheckReport
from contracts.settings import CONFIG_ENV, DEFAULT_CONFIG_FILE, Settings, load_settings
from contracts.task_view import SubtaskStatus, TaskStatus, TaskView
from metadb import credentials, hosts, users
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_master_key
from ob_takeover.cli import task_table
from ob_takeover.connection import ui_link
from ob_takeover.timeline import render_timeline

ROOT = Path.cwd()
BIN = Path(sys.executable).parent


def free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_port(port: int, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while free(port):
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {what} did not start on port {port}; see var/demo/*.log")
        time.sleep(0.2)


class Processes:
    """Child processes, stopped in reverse order with SIGTERM."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(command, stdout=kwargs.pop("stdout", log), stderr=log, env=env, **kwargs)
        self.children.append((name, process))
        return process

    def stop(self) -> None:
        for name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
            print(f"  stopped {name}")


API = "http://127.0.0.1:8080/api/v2"


@dataclass
class DemoApi:
    """The demo's calls to OCP's REST API, made as OCP clients make them (Basic auth, JSON)."""

    user: str
    password: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request = urllib.request.Request(
            API + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as reply:
                return json.load(reply).get("data")
        except urllib.error.HTTPError as error:
            message = json.load(error).get("error", {}).get("message", error.reason)
            raise SystemExit(f"demo: {method} {path} answered {error.code}: {message}") from None


def run_precheck(api: DemoApi, body: dict[str, Any]) -> bool:
    report = PrecheckReport.model_validate(api.call("POST", "/ob/clusters/takeOverPreCheck", body))
    print(
        f"\nPrecheck of {report.cluster_name} (OceanBase {report.version}): {len(report.items)} checks in "
        f"{report.seconds:.2f}s, {'passed' if report.passed else 'FAILED'}"
    )
    for item in report.items:
        if item.status != "PASSED":
            print(f"  {item.status:<8} {item.code or '':<6} {item.name} {item.node or ''}: {item.message}")
    return report.passed


def run_takeover(api: DemoApi, body: dict[str, Any], settings: Settings, password_file: Path) -> TaskView:
    started = api.call("POST", "/ob/clusters/takeOver", body)
    task_id = started["id"]
    workflow_id = workflow_id_for(body["address"], body["port"])
    print(f"\nTakeover started through OCP's REST API: task {task_id}, cluster {started['clusterId']}")
    print(f"  read it:     curl -s -u {api.user}:$(cat {password_file}) {API}/tasks/instances/{task_id}")
    print(f"  Temporal UI: {ui_link(settings, workflow_id)}")
    last = ""
    while True:
        task = TaskView.model_validate(api.call("GET", f"/tasks/instances/{task_id}"))
        done = sum(s.status is SubtaskStatus.SUCCESSFUL for s in task.subtasks)
        line = f"  {task.status.value}: {done}/{len(task.subtasks)} subtasks successful"
        if line != last:
            print(line, flush=True)
            last = line
        if task.status is not TaskStatus.RUNNING:
            return task
        time.sleep(0.5)


DEMO_MARK = "# ob-takeover demo settings"


def demo_config_file() -> Path:
    """./ob-takeover.toml, where `ob-takeover` commands run here find it, unless it holds other settings."""
    default = ROOT / DEFAULT_CONFIG_FILE
    if not default.exists() or default.read_text().startswith(DEMO_MARK):
        return default
    fallback = ROOT / "var" / "demo" / DEFAULT_CONFIG_FILE
    print(f"{default} holds settings of yours; the demo's are in {fallback} (export {CONFIG_ENV}={fallback})")
    return fallback


def write_private(path: Path, text: str) -> None:
    """A file only its owner can read, from its first byte."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(text)


def write_demo_config(path: Path, *, known_hosts: str) -> None:
    """The demo's settings; relative paths are relative to the file's directory."""
    base = "var/demo" if path.parent == ROOT else "."
    codec = "var/codec.key" if path.parent == ROOT else "../codec.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"{DEMO_MARK}, written by `python -m ob_takeover.demo`: `ob-takeover` commands run in this\n"
        "# directory use the demo's metadb and keys. Delete this file to go back to the defaults.\n"
        f'metadb = "{base}/metadb.sqlite"\n'
        f'master_key_file = "{base}/master.key"\n'
        "# Kept across runs, so the UI can still decode the history of earlier demo takeovers.\n"
        f'codec_key_file = "{codec}"\n'
        f"known_hosts = {json.dumps(known_hosts)}\n"
        'public_url = "http://127.0.0.1:8080"\n'
        'temporal_address = "127.0.0.1:7233"\n'
        "poll_interval = 0.5\n"
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# What the demo listens on; every port must be free before it starts.
PORTS = {
    "Temporal": 7233,
    "Temporal UI": 8233,
    "HTTP service": 8080,
    "payload codec": 8081,
    "worker metrics": 9464,
    "simulator SQL": 2881,
    "simulator SSH": 2222,
}
ROOT_PASSWORD = "Demo#Root'Pw1"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The demo's options (`--exit`); `--help` shows this module's docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exit", action="store_true", help="stop everything once the takeover ends")
    return parser.parse_args(argv)


def reset_demo_directory(var: Path, demo: Path) -> None:
    """An empty var/demo, readable by its owner only."""
    # Each run starts afresh, Temporal's history (var/demo/temporal.db) with the metadb, so that the REST API's
    # tasks and Temporal's workflows are the same ones.
    shutil.rmtree(demo, ignore_errors=True)
    demo.mkdir(parents=True, mode=0o700)
    var.chmod(0o700)


def check_ports_free() -> None:
    """Stop before starting anything if a port the demo needs is taken."""
    busy = [f"{name} ({port})" for name, port in PORTS.items() if not free(port)]
    if busy:
        raise SystemExit(f"demo: ports in use: {', '.join(busy)}; stop what uses them (an earlier demo?)")


def start_temporal(processes: Processes, demo: Path) -> None:
    """The Temporal dev server on var/demo/temporal.db, with the search attributes and the UI's codec."""
    processes.start(
        "temporal",
        [
            str(BIN / "temporal"), "server", "start-dev", "--db-filename", str(demo / "temporal.db"),
            "--ip", "127.0.0.1", "--port", "7233", "--ui-port", "8233", "--log-level", "warn",
            "--search-attribute", "ObClusterName=Keyword", "--search-attribute", "ObClusterAddress=Keyword",
            "--search-attribute", "ObTaskStatus=Keyword",
            "--ui-codec-endpoint", "http://127.0.0.1:8081/codec", "--ui-disable-news-fetch",
        ],
    )  # fmt: skip


def start_simulator(processes: Processes, demo: Path) -> dict[str, Any]:
    """The simulated 3-zone x 2-server cluster and its hosts; what it printed on its READY line."""
    write_private(demo / "root_password", ROOT_PASSWORD)
    simulator = processes.start(
        "obsim",
        [
            sys.executable, "-m", "obsim", "--zones", "3", "--servers-per-zone", "2",
            "--root-password-file", str(demo / "root_password"), "--base-address", "127.0.10.2",
            "--sql-port", "2881", "--ssh-port", "2222", "--hosts-dir", str(demo / "hosts"),
            "--io-calibration-seconds", "2",
        ],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert simulator.stdout is not None
    line = simulator.stdout.readline().decode()
    if not line.startswith("READY "):
        raise SystemExit("demo: the simulator did not start; see var/demo/obsim.log")
    ready: dict[str, Any] = json.loads(line[len("READY ") :])
    return ready


def start_service_and_worker(processes: Processes, env: dict[str, str]) -> None:
    """The HTTP service, then (once Temporal and the service answer) the worker."""
    processes.start("service", [str(BIN / "ob-takeover"), "serve", "--listen", "127.0.0.1:8080"], env=env)
    wait_port(7233, "Temporal")
    wait_port(8080, "the HTTP service")
    worker_env = {**env, "OB_TAKEOVER_METRICS_LISTEN": "127.0.0.1:9464"}
    processes.start("worker", [sys.executable, str(Path(__file__).resolve().parents[1] / "worker.py")], env=worker_env)


def open_demo_metadb(settings: Settings) -> tuple[Database, Vault]:
    """The demo's metadb, migrated, and its password box under the demo's master key."""
    db = Database(settings.metadb)
    migrate(db)
    vault = Vault(load_master_key(settings))
    vault.verify(db)
    return db, vault


def register_simulated_hosts(db: Database, vault: Vault, ready: dict[str, Any]) -> dict[str, Any]:
    """The host type and the SSH credential of the simulated hosts; the takeover body that uses them."""
    host_type = hosts.add_host_type(db, "demo-hosts", "simulated hosts")
    credential = credentials.save_credential(
        db, vault, kind=credentials.HOST, name="demo-admin-key", username=ready["ssh"]["username"],
        secret=Path(ready["ssh"]["private_key_file"]).read_text(), secret_type="private_key",
        hosts=[host["address"] for host in ready["hosts"]],  # bound to its hosts: a TASK_MANAGER may use it
    )  # fmt: skip
    print(f"Simulated cluster: 6 servers in 3 zones on 127.0.10.2-7; host type {host_type}, credential {credential}")
    return {
        "rootSysPassword": ROOT_PASSWORD,
        "address": ready["servers"][0]["address"],
        "port": ready["servers"][0]["sql_port"],
        "hostInfo": {"hostTypeId": host_type, "credentialId": credential, "sshPort": 2222},
    }


def add_api_user(db: Database, demo: Path) -> tuple[DemoApi, Path]:
    """A TASK_MANAGER user `demo` with a fresh password, kept in var/demo/api-password for curl."""
    api_password = secrets.token_urlsafe(12)
    users.add_user(db, "demo", users.TASK_MANAGER, api_password)
    password_file = demo / "api-password"
    write_private(password_file, api_password + "\n")
    return DemoApi("demo", api_password), password_file


def print_outcome(
    task: TaskView, began: float, demo: Path, config: Path, body: dict[str, Any], password_file: Path
) -> None:
    """The task table, how long the takeover took since `began` (monotonic), the timeline, where to look next."""
    print("\n" + task_table(task))
    print(f"\nTakeover {task.status.value} in {time.monotonic() - began:.1f}s.")
    (demo / "timeline.svg").write_text(render_timeline(task))
    print("Timeline:      var/demo/timeline.svg (subtasks as bars over time, by node)")
    print("Config server: http://127.0.0.1:8080/services?Action=ObRootServiceInfo&ObCluster=obcluster")
    print("Temporal UI:   http://127.0.0.1:8233")
    print("API page:      http://127.0.0.1:8080/api/v2/docs (user demo, password in var/demo/api-password)")
    print("Metrics:       http://127.0.0.1:8080/metrics (service), http://127.0.0.1:9464/metrics (worker)")
    print(f"Settings:      {config} (`ob-takeover cluster list` here shows the demo's cluster)")
    if task.status is not TaskStatus.SUCCESSFUL:
        print("The task waits for an operator: see docs/operators-guide.md, 'Operate a failed takeover'.")
    print_next_steps(task, body, password_file)


def print_next_steps(task: TaskView, body: dict[str, Any], password_file: Path) -> None:
    """What to try while the demo runs, with the demo's own user, credential and workflow."""
    workflow_id = workflow_id_for(body["address"], body["port"])
    codec = "--codec-endpoint http://127.0.0.1:8081/codec"
    where = BIN.relative_to(ROOT) if BIN.is_relative_to(ROOT) else BIN
    print("\nTry next (from this directory, with the demo's settings):")
    print(f"  {where}/ob-takeover tasks                          # the tasks, as the REST API lists them")
    print(f"  {where}/ob-takeover status {workflow_id}   # the subtasks")
    print(f"  curl -s -u demo:$(cat {password_file}) {API}/tasks/instances/{task.id}")
    print(f"  curl -s -u demo:$(cat {password_file}) {API}/ob/clusters")
    print(
        f"  {where}/ob-takeover precheck --address {body['address']} --port {body['port']} "
        f"--host-type-id {body['hostInfo']['hostTypeId']} --credential-id {body['hostInfo']['credentialId']} "
        f"--password-stdin < {password_file.parent / 'root_password'}"
    )
    print(f"  {where}/temporal workflow result -w {workflow_id} {codec}")
    print(f"  {where}/temporal workflow describe -w {workflow_id} {codec}")
    print("  (without --codec-endpoint, Temporal shows the payloads as ciphertext)")


def run_demo(processes: Processes, demo: Path, config: Path) -> TaskView:
    """Start everything, register the simulated hosts, precheck and take the cluster over."""
    env = {**os.environ, "OB_TAKEOVER_CONFIG": str(config)}
    print("Starting the Temporal dev server (var/demo/temporal.db), the HTTP service and a simulated cluster…")
    start_temporal(processes, demo)
    ready = start_simulator(processes, demo)
    write_demo_config(config, known_hosts=ready["ssh"]["known_hosts"])
    settings = load_settings(config_file=str(config))
    start_service_and_worker(processes, env)
    db, vault = open_demo_metadb(settings)
    body = register_simulated_hosts(db, vault, ready)
    began = time.monotonic()
    api, password_file = add_api_user(db, demo)
    if not run_precheck(api, body):
        raise SystemExit("demo: the precheck failed; see the items above")
    task = run_takeover(api, body, settings, password_file.relative_to(ROOT))
    print_outcome(task, began, demo, config, body, password_file.relative_to(ROOT))
    return task


def keep_running() -> None:
    """Until Ctrl-C or SIGTERM."""
    print("\nEverything keeps running; Ctrl-C (or SIGTERM to this process) stops it all.")
    signal.signal(signal.SIGTERM, _interrupt)
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> None:
    """Run the demo; Ctrl-C (or, with --exit, the takeover's end) stops everything it started."""
    args = parse_arguments(argv)
    var = ROOT / "var"
    demo = var / "demo"
    reset_demo_directory(var, demo)
    check_ports_free()
    config = demo_config_file()
    processes = Processes(demo)
    try:
        task = run_demo(processes, demo, config)
        if not args.exit:
            keep_running()
        if task.status is not TaskStatus.SUCCESSFUL:
            sys.exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nStopping…")
        processes.stop()


if __name__ == "__main__":
    main()
