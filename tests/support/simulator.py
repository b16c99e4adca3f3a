"""Starting `python -m obsim` for a test and talking to its control API."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activities.runtime import Runtime
from metadb import credentials, hosts
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import MasterKey, Vault

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Simulation:
    """A running simulated cluster (with hosts) and what its READY line said."""

    ready: dict[str, Any]
    root_password: str
    process: subprocess.Popen[bytes]
    hosts_dir: Path

    @property
    def address(self) -> str:
        return str(self.ready["servers"][0]["address"])

    @property
    def sql_port(self) -> int:
        return int(self.ready["servers"][0]["sql_port"])

    @property
    def ssh_port(self) -> int:
        return int(self.ready["hosts"][0]["ssh_port"]) if self.ready["hosts"] else 0

    def through_proxy(self, body: dict[str, Any], **changes: Any) -> dict[str, Any]:
        """`body` sent to the simulated OBProxy (started with --proxy-port) in proxy mode."""
        proxy = self.ready["proxy"]
        return {
            **body,
            "address": proxy["address"],
            "port": proxy["port"],
            "connectionMode": "proxy",
            "clusterName": self.ready["cluster"]["name"],
            **changes,
        }

    @property
    def control(self) -> str:
        return str(self.ready["control"])

    def host_root(self, address: str) -> Path:
        return Path(next(h["root"] for h in self.ready["hosts"] if h["address"] == address))

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.control + "/state", timeout=10) as reply:
            data: dict[str, Any] = json.load(reply)
            return data

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.control + path,
            method=method,
            data=json.dumps(body or {}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)

    def settled_network(self) -> dict[str, Any]:
        """`GET /network` once no connection is open and the counts stay put: the simulator's own start-up
        probes reach its servers through the relay a few one-way trips after its READY line."""
        deadline = time.monotonic() + 15
        last: dict[str, Any] = self.call("GET", "/network")
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now: dict[str, Any] = self.call("GET", "/network")
            if now["connections_opened"] == last["connections_opened"] and not any(now["connections_open"].values()):
                return now
            last = now
        raise TimeoutError(f"the simulator's connections did not settle: {last}")

    def fault(
        self,
        match: str,
        error: int = 4012,
        message: str = "Timeout",
        server: str | None = None,
        times: int = 1,
        skip: int = 0,
    ) -> None:
        self.call(
            "POST",
            "/faults",
            {"match": match, "error": error, "message": message, "server": server, "times": times, "skip": skip},
        )


@contextmanager
def simulation(
    tmp_path: Path,
    *,
    zones: int = 3,
    servers_per_zone: int = 2,
    root_password: str = "Root#Pw'1",
    extra: list[str] | None = None,
    hosts: bool = True,
    base: str | None = None,
    sql_port: int | None = None,
    latency_ms: float = 0,
    jitter_ms: float = 0,
    network: bool = False,
) -> Iterator[Simulation]:
    """Run a simulated cluster on a random 127.x.y.0/24 block and random ports (unless given); stop it
    afterwards. `latency_ms`, `jitter_ms` and `network` are the simulator's network options."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    password_file = tmp_path / "root_password"
    password_file.write_text(root_password)
    base = base or f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.2"
    sql_port = sql_port or random.randint(20000, 40000)
    hosts_dir = tmp_path / "hosts"
    command = [
        sys.executable, "-m", "obsim", "--zones", str(zones), "--servers-per-zone", str(servers_per_zone),
        "--root-password-file", str(password_file), "--base-address", base, "--sql-port", str(sql_port),
        "--io-calibration-seconds", "0.3", *(extra or []),
    ]  # fmt: skip
    if hosts:
        command += ["--ssh-port", str(sql_port + 1), "--hosts-dir", str(hosts_dir)]
    if latency_ms:
        command += ["--latency-ms", str(latency_ms)]
    if jitter_ms:
        command += ["--jitter-ms", str(jitter_ms)]
    if network:
        command.append("--network")
    log = (tmp_path / "obsim.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, env={**os.environ})
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        line = b""
        while not line.startswith(b"READY "):
            line = process.stdout.readline()
            if not line and (process.poll() is not None or time.monotonic() > deadline):
                raise RuntimeError(f"obsim did not start: {(tmp_path / 'obsim.log').read_text()[-2000:]}")
        ready = json.loads(line[len(b"READY ") :])
        yield Simulation(ready, root_password, process, hosts_dir)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def takeover_body(sim: Simulation, runtime: Runtime, host_type: str = "sim") -> dict[str, Any]:
    """A takeover request for `sim` whose hosts are reached with its SSH key, registered in `runtime`."""
    return {
        "rootSysPassword": sim.root_password,
        "address": sim.address,
        "port": sim.sql_port,
        "hostInfo": {
            "hostTypeId": hosts.add_host_type(runtime.db, host_type),
            "credentialId": register_ssh_key(runtime, sim),
            "sshPort": sim.ssh_port,
        },
    }


@contextmanager
def many_simulations(tmp_path: Path, count: int, extra: list[str] | None = None) -> Iterator[list[Simulation]]:
    """`count` different one-server clusters with their hosts (obcluster0..N-1, cluster ids 1..N), each on
    its own loopback block (`extra`: more simulator options); `tmp_path / "known_hosts"` lists all their
    host keys."""
    with ExitStack() as stack:
        sims = [
            stack.enter_context(
                simulation(
                    tmp_path / f"sim{i}",
                    zones=1,
                    servers_per_zone=1,
                    base=f"127.{100 + i}.{random.randint(1, 254)}.2",
                    extra=["--cluster-name", f"obcluster{i}", "--cluster-id", str(i + 1), *(extra or [])],
                )
            )
            for i in range(count)
        ]
        (tmp_path / "known_hosts").write_text("".join(Path(s.ready["ssh"]["known_hosts"]).read_text() for s in sims))
        yield sims


def worker_env(
    *,
    metadb: str,
    key_file: Path,
    known_hosts: str | Path,
    temporal: str | None = None,
    queue: str | None = None,
    **settings: object,
) -> dict[str, str]:
    """The environment of a production worker (`python worker.py`) for simulated clusters; `settings` are
    more of its settings by name (`poll_interval=0.2` sets OB_TAKEOVER_POLL_INTERVAL)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OB_TAKEOVER_METADB": metadb,
        "OB_TAKEOVER_MASTER_KEY_FILE": str(key_file),
        "OB_TAKEOVER_KNOWN_HOSTS": str(known_hosts),
    }
    if temporal:
        env["TEMPORAL_ADDRESS"] = temporal
    if queue:
        env["OB_TAKEOVER_TASK_QUEUE"] = queue
    env.update({f"OB_TAKEOVER_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def sim_runtime(tmp_path: Path, sim: Simulation) -> Runtime:
    """A worker runtime for takeovers of `sim`: a fresh SQLite metadb, a new master key, its known_hosts."""
    db = Database(f"sqlite:///{tmp_path / 'metadb.sqlite'}")
    migrate(db)
    vault = Vault(MasterKey.generate())
    vault.verify(db)
    return Runtime(db=db, vault=vault, known_hosts=sim.ready["ssh"]["known_hosts"], poll_interval=0.1)


def registered_runtime(tmp_path: Path, sim: Simulation) -> Runtime:
    """`sim_runtime` with host type 1 and the simulated hosts' key as credential 1 (`sim_body`'s hostInfo)."""
    runtime = sim_runtime(tmp_path, sim)
    hosts.add_host_type(runtime.db, "t")
    register_ssh_key(runtime, sim)
    return runtime


def sim_body(sim: Simulation, **changes: Any) -> dict[str, Any]:
    """A takeover request for `sim`, its hosts reached with `registered_runtime`'s host type and key."""
    body = {
        "rootSysPassword": sim.root_password,
        "address": sim.address,
        "port": sim.sql_port,
        "hostInfo": {"hostTypeId": 1, "credentialId": 1, "sshPort": sim.ssh_port},
    }
    body.update(changes)
    return body


def register_ssh_key(runtime: Runtime, sim: Simulation, name: str = "key") -> int:
    """The simulated hosts' client key as a host credential in the password box; returns its id."""
    return credentials.save_credential(
        runtime.db,
        runtime.vault,
        kind=credentials.HOST,
        name=name,
        username=sim.ready["ssh"]["username"],
        secret=Path(sim.ready["ssh"]["private_key_file"]).read_text(),
        secret_type="private_key",
    )


def stored_secret(runtime: Runtime, name: str) -> str:
    """A cluster credential's secret from the password box (a test fails if it is not there)."""
    found = credentials.find_credential(runtime.db, runtime.vault, credentials.CLUSTER, name)
    assert found is not None, f"no credential {name}"
    return found.secret


def wrap_host_command(root: Path, command: str, args: str, action: str) -> None:
    """Put a wrapper of `command` first on a simulated host's PATH that runs the bash `action` first
    when the command's arguments contain `args` (`sleep 2`, `echo no >&2; exit 1`); a second call for
    the same command adds to the first."""
    wrapper = root / "usr/local/bin" / command
    cases = wrapper.read_text().splitlines()[1:-1] if wrapper.exists() else []
    cases.append(f'case "$*" in *"{args}"*) {action} ;; esac')
    wrapper.write_text("\n".join(["#!/bin/bash", *cases, f'exec /bin/{command} "$@"']) + "\n")
    wrapper.chmod(0o755)


def unwrap_host_commands(sim: Simulation) -> None:
    for host in sim.ready["hosts"]:
        for wrapper in (Path(host["root"]) / "usr/local/bin").glob("*"):
            wrapper.unlink()


def end_state(sim: Simulation, db: Database) -> dict[str, Any]:
    """What a takeover leaves on the cluster, in the metadb and on the hosts, without what differs
    from run to run (times, pids, ids, random passwords, the run's own directory)."""
    cluster = sim.state()
    volatile = {"created_at", "updated_at", "locked_at", "start_time", "pid", "task_id", "secret", "facts"}
    volatile |= {"data_disk_free_kb", "log_disk_free_kb"}

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

    files: dict[str, Any] = {}
    for host in sim.ready["hosts"]:
        home = Path(host["root"]) / "home/admin"
        names = sorted(
            re.sub(r"-\d+", "-TASK", str(p.relative_to(home)))
            for p in home.rglob("*")
            if not str(p.relative_to(home)).startswith("oceanbase")
        )
        conf = home / "ocp_agent/conf"
        document = json.loads((conf / "ob_cluster.json").read_text()) if (conf / "ob_cluster.json").exists() else {}
        if document:
            encrypted = document["monitor"]["password"].startswith("aesgcm:")
            document["monitor"]["password"] = "encrypted" if encrypted else "?"
        modules = (conf / "modules.json").read_text() if (conf / "modules.json").exists() else None
        files[host["address"]] = {"names": names, "config": document, "modules": modules}
    state = {
        "cluster": {k: cluster[k] for k in ("users", "parameters", "variables", "resource_manager", "io_calibration")},
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
    result: dict[str, Any] = json.loads(json.dumps(state).replace(str(sim.hosts_dir), "HOSTS"))
    return result


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
