"""The production worker (`python worker.py`) killed with SIGKILL during "Refresh ocp agent config":
a second worker finishes the takeover and every host ends with exactly one correct configuration."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from temporalio.client import Client

from metadb import credentials, hosts
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_master_key
from tests.driver import named, start, wait_for
from tests.simulator import simulation

ROOT = Path(__file__).resolve().parents[1]


def slow_mv(root: Path, seconds: float) -> None:
    """Make `mv` on a simulated host slow, so a subtask that writes files is caught mid-way."""
    wrapper = root / "usr/local/bin/mv"
    wrapper.write_text(f'#!/bin/bash\nsleep {seconds}\nexec /bin/mv "$@"\n')
    wrapper.chmod(0o755)


async def test_worker_killed_during_agent_config_refresh(client: Client, task_queue: str, tmp_path: Path) -> None:
    with simulation(tmp_path) as sim:
        for host in sim.ready["hosts"]:
            slow_mv(Path(host["root"]), 1.5)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "OB_TAKEOVER_TASK_QUEUE": task_queue,
            "OB_TAKEOVER_METADB": f"sqlite:///{tmp_path / 'metadb.sqlite'}",
            "OB_TAKEOVER_MASTER_KEY_FILE": str(tmp_path / "master.key"),
            "OB_TAKEOVER_KNOWN_HOSTS": sim.ready["ssh"]["known_hosts"],
            "OB_TAKEOVER_POLL_INTERVAL": "0.1",
        }
        db = Database(env["OB_TAKEOVER_METADB"])
        migrate(db)
        vault = Vault(load_master_key({"OB_TAKEOVER_MASTER_KEY_FILE": env["OB_TAKEOVER_MASTER_KEY_FILE"]}))
        vault.verify(db)
        body = {
            "rootSysPassword": sim.root_password,
            "address": sim.address,
            "port": sim.sql_port,
            "hostInfo": {
                "hostTypeId": hosts.add_host_type(db, "sim"),
                "credentialId": credentials.save_credential(
                    db,
                    vault,
                    kind=credentials.HOST,
                    name="k",
                    username="admin",
                    secret=Path(sim.ready["ssh"]["private_key_file"]).read_text(),
                    secret_type="private_key",
                ),
                "sshPort": sim.ssh_port,
            },
        }

        def spawn(name: str) -> subprocess.Popen[bytes]:
            log = (tmp_path / f"{name}.log").open("wb")
            return subprocess.Popen(
                [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

        first = spawn("worker1")
        second = None
        try:
            handle = await start(client, task_queue, body)
            await wait_for(
                handle,
                lambda t: any(s.status.value == "RUNNING" for s in named(t, "Refresh ocp agent config")),
                timeout=60,
            )
            await asyncio.sleep(0.5)  # inside the write: mv sleeps 1.5 s
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed = time.monotonic()
            second = spawn("worker2")
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=90)
            elapsed = time.monotonic() - killed
            assert task.status.value == "SUCCESSFUL", (tmp_path / "worker2.log").read_text()[-3000:]
            print(f"takeover finished {elapsed:.1f}s after the worker was killed")
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.terminate()
                    process.wait(15)
        for host in sim.ready["hosts"]:
            conf = Path(host["root"]) / "home/admin/ocp_agent/conf"
            names = sorted(p.name for p in conf.iterdir())
            assert names == [
                "agent.key",
                f"agent.key.created-{task.id}",
                "modules.json",
                f"modules.json.before-{task.id}.none",
                "ob_cluster.json",
                f"ob_cluster.json.before-{task.id}.none",
            ], names
            document = json.loads((conf / "ob_cluster.json").read_text())
            assert document["cluster"] == {
                "name": "obcluster",
                "id": 1,
                "config_url": "http://127.0.0.1:8080/services?Action=ObRootServiceInfo&ObCluster=obcluster&ObClusterId=1",
            }
            assert [o["ip"] for o in document["observers"]] == [host["address"]]
        assert "ocp_monitor" in sim.state()["users"]
