"""The crash matrix: for each kind of subtask, the production worker (`python worker.py`) is killed with
SIGKILL while that subtask runs, and a new worker is started. Every takeover ends SUCCESSFUL, with an
end state (simulator, metadb, host files) identical to an uncrashed takeover's.

A subtask is caught mid-way by slowing what it does: an injected delay on one of its statements in
the simulator, or a slow command on the hosts.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from metadb import credentials, hosts
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_master_key
from tests.driver import named, start, wait_for
from tests.simulator import Simulation, simulation

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.reliability

# subtask -> how it is slowed: ("sql", regex, times) or ("host", command)
SLOWDOWNS: dict[str, tuple[str, str, int]] = {
    "Prepare take over cluster": ("sql", r"WHERE NAME = 'obconfig_url'", 1),
    "Reserve host": ("host", "df", 0),
    "Create default user": ("sql", r"CREATE USER IF NOT EXISTS ocp_monitor", 1),
    "Register config url": ("sql", r"ALTER SYSTEM SET obconfig_url", 1),
    "Run io calibration": ("sql", r"RUN JOB 'io_calibration'", 6),
    "Record root service list": ("sql", r"CDB_OB_LS_LOCATIONS", 1),
    "Wait cluster accessible": ("sql", r"AS NOT_READY", 1),
    "Update server process info": ("host", "ps", 0),
    "Attach cluster attributes": ("sql", r"ob_version\(\) AS VERSION", 1),
    "Refresh ocp agent config": ("host", "mv", 0),
    "Sync cluster info": ("sql", r"SELECT ZONE, STATUS, REGION, IDC, TYPE", 2),
    "Sync all tenant information": ("sql", r"TENANT_ID, TENANT_NAME", 1),
    "Set proxyro password to sys tenant": ("sql", r"CREATE USER IF NOT EXISTS proxyro", 1),
    "Update observer status": ("sql", r"SELECT STATUS FROM oceanbase.DBA_OB_SERVERS WHERE", 6),
    "Update zone status": ("sql", r"FROM oceanbase.DBA_OB_ZONES WHERE ZONE", 3),
    "Create resource manager for default user": ("sql", r"DBA_RSRC_CONSUMER_GROUPS", 1),
}


def slow_command(root: Path, command: str, seconds: float) -> None:
    """Make a command on a simulated host slow (a wrapper earlier on its PATH)."""
    wrapper = root / "usr/local/bin" / command
    wrapper.write_text(f'#!/bin/bash\nsleep {seconds}\nexec /bin/{command} "$@"\n')
    wrapper.chmod(0o755)


class Takeover:
    """A simulated cluster, a metadb, and worker processes for one takeover."""

    def __init__(self, client: Client, task_queue: str, tmp_path: Path, sim: Simulation) -> None:
        self.client = client
        self.tmp_path = tmp_path
        self.sim = sim
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "OB_TAKEOVER_TASK_QUEUE": task_queue,
            "OB_TAKEOVER_METADB": f"sqlite:///{tmp_path / 'metadb.sqlite'}",
            "OB_TAKEOVER_MASTER_KEY_FILE": str(tmp_path / "master.key"),
            "OB_TAKEOVER_KNOWN_HOSTS": sim.ready["ssh"]["known_hosts"],
            "OB_TAKEOVER_POLL_INTERVAL": "0.1",
            # Timeouts at a fifth: a short subtask (180 s) still has room for a retry after a crash
            # noticed by its heartbeat timeout (a third of its timeout).
            "OB_TAKEOVER_TIMEOUT_SCALE": "0.2",
        }
        self.db = Database(self.env["OB_TAKEOVER_METADB"])
        migrate(self.db)
        self.vault = Vault(load_master_key({"OB_TAKEOVER_MASTER_KEY_FILE": self.env["OB_TAKEOVER_MASTER_KEY_FILE"]}))
        self.vault.verify(self.db)
        self.body = {
            "rootSysPassword": sim.root_password,
            "address": sim.address,
            "port": sim.sql_port,
            "hostInfo": {
                "hostTypeId": hosts.add_host_type(self.db, "sim"),
                "credentialId": credentials.save_credential(
                    self.db,
                    self.vault,
                    kind=credentials.HOST,
                    name="k",
                    username="admin",
                    secret=Path(sim.ready["ssh"]["private_key_file"]).read_text(),
                    secret_type="private_key",
                ),
                "sshPort": sim.ssh_port,
            },
        }
        self.workers: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"worker{len(self.workers)}.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(15)


def snapshot(sim: Simulation, db: Database) -> dict[str, Any]:
    """The end state without what differs from run to run (times, pids, ids, random passwords)."""
    state = sim.state()
    volatile = {"created_at", "updated_at", "locked_at", "start_time", "pid", "task_id", "secret", "facts"}

    def clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            row = {k: v for k, v in row.items() if k not in volatile and not k.endswith("_id") and k != "id"}
            if row.get("process_info"):
                info = json.loads(row["process_info"])
                row["process_info"] = {k: v for k, v in info.items() if k not in volatile}
            if row.get("attributes"):
                row["attributes"] = json.loads(row["attributes"])
            out.append(row)
        return sorted(out, key=lambda r: json.dumps(r, sort_keys=True, default=str))

    files = {}
    for host in sim.ready["hosts"]:
        conf = Path(host["root"]) / "home/admin/ocp_agent/conf"
        names = sorted(re.sub(r"-\d+", "-TASK", p.name) for p in conf.iterdir())
        document = json.loads((conf / "ob_cluster.json").read_text())
        document["monitor"]["password"] = "encrypted" if document["monitor"]["password"].startswith("aesgcm:") else "?"
        files[host["address"]] = {
            "names": names,
            "config": document,
            "modules": (conf / "modules.json").read_text(),
        }
    return {
        "cluster": {k: state[k] for k in ("users", "parameters", "variables", "resource_manager", "io_calibration")},
        "metadb": {
            table: clean(db.query(f"SELECT * FROM {table}"))
            for table in (
                "clusters",
                "zones",
                "servers",
                "tenants",
                "units",
                "resource_pools",
                "unit_configs",
                "hosts",
                "cluster_locks",
                "credentials",
            )
        },
        "hosts": files,
    }


# Every run uses the same addresses and ports, so that end states compare equal.
BASE = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.2"
SQL_PORT = random.randint(20000, 40000)


async def run_takeover(client: Client, task_queue: str, tmp_path: Path, crash_during: str | None) -> dict[str, Any]:
    with simulation(tmp_path, base=BASE, sql_port=SQL_PORT) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim)
        if crash_during:
            kind, what, times = SLOWDOWNS[crash_during]
            if kind == "sql":
                sim.call("POST", "/faults", {"match": what, "error": 0, "delay": 1.5, "times": times})
            else:
                for host in sim.ready["hosts"]:
                    slow_command(Path(host["root"]), what, 1.0)
        first = takeover.spawn()
        try:
            handle = await start(client, task_queue, takeover.body)
            if crash_during:
                await wait_for(
                    handle,
                    lambda t: any(s.status.value == "RUNNING" for s in named(t, crash_during)),
                    timeout=60,
                )
                await asyncio.sleep(0.3)
                first.send_signal(signal.SIGKILL)
                first.wait()
                killed = time.monotonic()
                takeover.spawn()
                resumed = await wait_for(
                    handle,
                    lambda t: any(s.status.value != "RUNNING" for s in named(t, crash_during)),
                    timeout=60,
                )
                print(f"{crash_during}: next state {time.monotonic() - killed:.1f}s after the kill")
                assert resumed is not None
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert task.status.value == "SUCCESSFUL", (tmp_path / "worker1.log").read_text()[-3000:]
            for host in sim.ready["hosts"]:
                for command in ("df", "ps", "mv"):
                    (Path(host["root"]) / "usr/local/bin" / command).unlink(missing_ok=True)
            # Host roots live under each run's own directory.
            state: dict[str, Any] = json.loads(
                json.dumps(snapshot(sim, takeover.db)).replace(str(sim.hosts_dir), "HOSTS")
            )
            return state
        finally:
            takeover.stop()


@pytest.fixture(scope="module")
def uncrashed() -> dict[str, Any]:
    return {}


@pytest.mark.parametrize("subtask", list(SLOWDOWNS))
async def test_worker_killed_during_subtask(
    client: Client, task_queue: str, tmp_path: Path, subtask: str, uncrashed: dict[str, Any]
) -> None:
    if not uncrashed:
        uncrashed.update(await run_takeover(client, f"{task_queue}-ref", tmp_path / "reference", None))
    crashed = await run_takeover(client, task_queue, tmp_path / "crashed", subtask)
    assert crashed["cluster"] == uncrashed["cluster"]
    assert crashed["metadb"] == uncrashed["metadb"]
    assert crashed["hosts"] == uncrashed["hosts"]
