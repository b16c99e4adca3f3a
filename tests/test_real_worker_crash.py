"""The crash matrix: for each kind of subtask and each compensation, the production worker
(`python worker.py`) is killed with SIGKILL while it runs, and a new worker is started. Every takeover
ends SUCCESSFUL with an end state (simulator, metadb, host files) identical to an uncrashed takeover's;
a rollback crashed in every compensation ends with the state from before the takeover.

A subtask is caught mid-way by slowing what it does: an injected delay on one of its statements in
the simulator, a slow command on the hosts, or (for the subtasks that only write the metadb) a trigger
in a MariaDB metadb that sleeps before the subtask's write.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
from temporalio.client import Client

from metadb import credentials, hosts
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_master_key
from tests.driver import Handle, failed, log_of, named, start, update, wait_for
from tests.mariadb import create_database
from tests.simulator import Simulation, end_state, simulation, unwrap_host_commands, wrap_host_command

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.reliability
DELAY = 1.5


@dataclass(frozen=True)
class Slowdown:
    """How one subtask is made slow enough to be killed in the middle.

    sql: `match` is a statement regex the simulator delays `times` times.
    host: `match` is a command made slow on every host when its arguments contain `args`.
    metadb: `match` is "EVENT table" and `args` a condition on OLD/NEW; a MariaDB trigger sleeps first.
    """

    kind: str
    match: str
    times: int = 1
    args: str = ""


SLOWDOWNS: dict[str, Slowdown] = {
    "Mc lock ob clusters": Slowdown("metadb", "INSERT cluster_locks", args="TRUE"),
    "Prepare take over cluster": Slowdown("sql", r"WHERE NAME = 'obconfig_url'"),
    "Reserve host": Slowdown("host", "df"),
    "Create default user": Slowdown("sql", r"CREATE USER IF NOT EXISTS ocp_monitor"),
    "Register config url": Slowdown("sql", r"ALTER SYSTEM SET obconfig_url"),
    "Run io calibration": Slowdown("sql", r"RUN JOB 'io_calibration'", times=6),
    "Record root service list": Slowdown("sql", r"CDB_OB_LS_LOCATIONS"),
    "Wait cluster accessible": Slowdown("sql", r"AS NOT_READY"),
    "Update server process info": Slowdown("host", "ps"),
    "Attach cluster attributes": Slowdown("sql", r"ob_version\(\) AS VERSION"),
    "Refresh ocp agent config": Slowdown("host", "mv", args="ob_cluster.json"),
    "Active agent modules": Slowdown("host", "mv", args="modules.json"),
    "Sync cluster info": Slowdown("sql", r"SELECT ZONE, STATUS, REGION, IDC, TYPE", times=2),
    "Sync all tenant information": Slowdown("sql", r"TENANT_ID, TENANT_NAME"),
    "Set proxyro password to sys tenant": Slowdown("sql", r"CREATE USER IF NOT EXISTS proxyro"),
    "Update observer status": Slowdown("sql", r"SELECT STATUS FROM oceanbase.DBA_OB_SERVERS WHERE", times=6),
    "Update zone status": Slowdown("sql", r"FROM oceanbase.DBA_OB_ZONES WHERE ZONE", times=3),
    "Update OB cluster status": Slowdown("metadb", "UPDATE clusters", args="NEW.status <> OLD.status"),
    "Create resource manager for default user": Slowdown("sql", r"DBA_RSRC_CONSUMER_GROUPS"),
    "Mc unlock ob clusters": Slowdown("metadb", "DELETE cluster_locks", args="TRUE"),
}


def cleared(column: str) -> str:
    return f"OLD.{column} IS NOT NULL AND NEW.{column} IS NULL"


# The compensations a rollback from "Sync all tenant information" runs, in the order it runs them.
COMPENSATIONS: dict[str, Slowdown] = {
    "Sync cluster info": Slowdown("metadb", "DELETE zones", args="TRUE"),
    "Active agent modules": Slowdown("host", "rm", args="modules.json"),
    "Refresh ocp agent config": Slowdown("host", "rm", args="ob_cluster.json"),
    "Attach cluster attributes": Slowdown("metadb", "UPDATE clusters", args=cleared("attributes")),
    "Update server process info": Slowdown("metadb", "UPDATE servers", args=cleared("process_info")),
    "Record root service list": Slowdown("metadb", "UPDATE clusters", args=cleared("rs_list")),
    "Register config url": Slowdown("sql", r"ALTER SYSTEM SET obconfig_url", times=99),
    "Create default user": Slowdown("sql", r"DROP USER", times=99),
    "Reserve host": Slowdown("metadb", "DELETE hosts", args="TRUE"),
    "Prepare take over cluster": Slowdown("metadb", "DELETE clusters", args="TRUE"),
    "Mc lock ob clusters": Slowdown("metadb", "DELETE cluster_locks", args="TRUE"),
}

# Rollbacks crashed in every compensation that has work to do when rolling back from a failure at
# `failure`. The failed subtask itself wrote nothing. Removing process info or the root service list
# finds nothing left to change after a rollback from "Sync all tenant information": the server rows
# are gone and the config URL is still registered; the second case catches the process info removal.
ROLLBACKS: dict[str, tuple[str, list[str]]] = {
    "Sync all tenant information": (
        r"TENANT_ID, TENANT_NAME",
        [name for name in COMPENSATIONS if name not in ("Update server process info", "Record root service list")],
    ),
    "Attach cluster attributes": (r"ob_version\(\) AS VERSION", ["Update server process info"]),
}


def slow_metadb(url: str, name: str, slowdown: Slowdown) -> None:
    """A trigger that sleeps before the first matching row change on each metadb connection."""
    event, table = slowdown.match.split()
    trigger = "slow_" + re.sub(r"\W", "_", name.lower())
    match = re.fullmatch(r"mysql://(\w+):@([\d.]+):(\d+)/(\w+)", url)
    assert match, url
    user, host, port, database = match.groups()
    with pymysql.connect(host=host, port=int(port), user=user, password="", database=database) as connection:
        connection.cursor().execute(
            f"CREATE TRIGGER {trigger} BEFORE {event} ON {table} FOR EACH ROW BEGIN "
            f"IF @{trigger} IS NULL AND ({slowdown.args}) THEN SET @{trigger} = 1; DO SLEEP({DELAY}); END IF; END"
        )


def slow_down(name: str, slowdown: Slowdown, sim: Simulation, metadb_url: str) -> None:
    if slowdown.kind == "sql":
        sim.call("POST", "/faults", {"match": slowdown.match, "error": 0, "delay": DELAY, "times": slowdown.times})
    elif slowdown.kind == "host":
        for host in sim.ready["hosts"]:
            wrap_host_command(Path(host["root"]), slowdown.match, slowdown.args, f"sleep {DELAY}")
    else:
        slow_metadb(metadb_url, name, slowdown)


class Takeover:
    """A simulated cluster, a metadb, and worker processes for one takeover."""

    def __init__(self, client: Client, task_queue: str, tmp_path: Path, sim: Simulation, metadb_url: str) -> None:
        self.client = client
        self.task_queue = task_queue
        self.tmp_path = tmp_path
        self.sim = sim
        self.metadb_url = metadb_url
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "OB_TAKEOVER_TASK_QUEUE": task_queue,
            "OB_TAKEOVER_METADB": metadb_url,
            "OB_TAKEOVER_MASTER_KEY_FILE": str(tmp_path / "master.key"),
            "OB_TAKEOVER_KNOWN_HOSTS": sim.ready["ssh"]["known_hosts"],
            "OB_TAKEOVER_POLL_INTERVAL": "0.1",
            # Timeouts at a fifth: a short subtask (180 s) still has room for a retry after a crash
            # noticed by its heartbeat timeout (a third of its timeout).
            "OB_TAKEOVER_TIMEOUT_SCALE": "0.2",
        }
        self.db = Database(metadb_url)
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

    def last_log(self) -> str:
        return (self.tmp_path / f"worker{len(self.workers) - 1}.log").read_text()[-3000:]

    async def crash_during(self, handle: Handle, name: str) -> float:
        """Kill the worker while `name` runs and start another; the seconds from the kill until the
        subtask (every branch of it) has left RUNNING."""
        await wait_for(handle, lambda t: any(s.status.value == "RUNNING" for s in named(t, name)), timeout=60)
        await asyncio.sleep(0.3)
        worker = self.workers[-1]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        killed = time.monotonic()
        self.spawn()
        task = await wait_for(handle, lambda t: all(s.status.value != "RUNNING" for s in named(t, name)), timeout=60)
        seconds = time.monotonic() - killed
        # The kill caught the subtask mid-way: a new attempt of it ran on the new worker.
        logs = [await log_of(handle, s.id) for s in named(task, name)]
        assert any("attempt 2" in log for log in logs), logs
        return seconds

    def state(self) -> dict[str, Any]:
        # Host roots live under each run's own directory.
        unwrap_host_commands(self.sim)
        return end_state(self.sim, self.db)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(15)
        self.db.close()


# Every run uses the same addresses and ports, so that end states compare equal.
BASE = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.2"
SQL_PORT = random.randint(20000, 40000)


async def run_takeover(
    client: Client, task_queue: str, tmp_path: Path, metadb_url: str | None, crash_during: str | None
) -> dict[str, Any]:
    with simulation(tmp_path, base=BASE, sql_port=SQL_PORT) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, metadb_url or f"sqlite:///{tmp_path / 'metadb.sqlite'}")
        try:
            if crash_during:
                slow_down(crash_during, SLOWDOWNS[crash_during], sim, takeover.metadb_url)
            takeover.spawn()
            handle = await start(client, task_queue, takeover.body)
            if crash_during:
                seconds = await takeover.crash_during(handle, crash_during)
                print(f"{crash_during}: next state {seconds:.1f}s after the kill")
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert task.status.value == "SUCCESSFUL", takeover.last_log()
            return takeover.state()
        finally:
            takeover.stop()


def metadb_for(mariadb: tuple[str, int], slowdowns: list[Slowdown]) -> str | None:
    """A fresh MariaDB metadb when a slowdown needs triggers; otherwise None (SQLite)."""
    if any(s.kind == "metadb" for s in slowdowns):
        return create_database(*mariadb, f"crash_{uuid.uuid4().hex[:10]}")
    return None


@pytest.fixture(scope="module")
def uncrashed() -> dict[str, Any]:
    return {}


@pytest.mark.parametrize("subtask", list(SLOWDOWNS))
async def test_worker_killed_during_subtask(
    client: Client,
    task_queue: str,
    tmp_path: Path,
    subtask: str,
    uncrashed: dict[str, Any],
    mariadb: tuple[str, int],
) -> None:
    if not uncrashed:
        uncrashed.update(await run_takeover(client, f"{task_queue}-ref", tmp_path / "reference", None, None))
    metadb_url = metadb_for(mariadb, [SLOWDOWNS[subtask]])
    crashed = await run_takeover(client, task_queue, tmp_path / "crashed", metadb_url, subtask)
    assert crashed["cluster"] == uncrashed["cluster"]
    assert crashed["metadb"] == uncrashed["metadb"]
    assert crashed["hosts"] == uncrashed["hosts"]


@pytest.mark.parametrize("failure", list(ROLLBACKS))
async def test_worker_killed_during_each_compensation(
    client: Client, task_queue: str, tmp_path: Path, failure: str, mariadb: tuple[str, int]
) -> None:
    statement, victims = ROLLBACKS[failure]
    metadb_url = metadb_for(mariadb, [COMPENSATIONS[name] for name in victims])
    assert metadb_url is not None
    with simulation(tmp_path, base=BASE, sql_port=SQL_PORT) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, metadb_url)
        try:
            before = takeover.state()
            sim.fault(statement, error=4012, message="Timeout")
            takeover.spawn()
            handle = await start(client, task_queue, takeover.body)
            task = await wait_for(handle, failed, timeout=90)
            assert [s.name for s in task.subtasks if s.status.value == "FAILED"] == [failure]
            for name in victims:
                slow_down(name, COMPENSATIONS[name], sim, metadb_url)
            await update(handle, "rollback")
            for name in victims:
                seconds = await takeover.crash_during(handle, name)
                print(f"rollback of {name}: next state {seconds:.1f}s after the kill")
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert (task.status.value, task.operation.value) == ("SUCCESSFUL", "ROLLBACK"), takeover.last_log()
            after = takeover.state()
        finally:
            takeover.stop()
    # The io calibration is the cluster's own, kept after a rollback; nothing else of the takeover is.
    for state in (before, after):
        state["cluster"].pop("io_calibration")
    assert after == before


async def test_worker_stopped_with_sigterm_finishes_its_subtask_and_exits_cleanly(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """A rolling restart: SIGTERM lets the running subtask finish (no second attempt), the worker
    exits 0, and the next worker carries the takeover on."""
    with simulation(tmp_path, zones=1, servers_per_zone=1) as sim:
        takeover = Takeover(client, task_queue, tmp_path, sim, f"sqlite:///{tmp_path / 'metadb.sqlite'}")
        try:
            slow_down("Reserve host", Slowdown("host", "df"), sim, takeover.metadb_url)
            first = takeover.spawn()
            handle = await start(client, task_queue, takeover.body)
            await wait_for(handle, lambda t: named(t, "Reserve host")[0].status.value == "RUNNING", timeout=60)
            first.terminate()
            assert first.wait(15) == 0, takeover.last_log()
            output = takeover.last_log()
            assert "stopping: finishing running activities" in output and "Fatal" not in output, output
            takeover.spawn()
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert task.status.value == "SUCCESSFUL", takeover.last_log()
            (reserve,) = named(task, "Reserve host")
            log = await log_of(handle, reserve.id)
            assert "attempt 2" not in log and reserve.run_time == 1, log
            # The stopped worker finished it: its log has the subtask's last words.
            assert log.strip().splitlines()[-1] in output
        finally:
            takeover.stop()
