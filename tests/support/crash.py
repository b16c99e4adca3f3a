"""Killing production workers (`python worker.py`) in the middle of a subtask of a simulated takeover.

A subtask is caught mid-way by slowing what it does: an injected delay on one of its statements in
the simulator, a slow command on the hosts, or (for the subtasks that only write the metadb) a trigger
in a MariaDB metadb that sleeps before the subtask's write.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
from temporalio.client import Client, WorkflowHandle

from contracts.settings import load_settings
from metadb import credentials, hosts
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_master_key
from tests.support.driver import Handle, log_of, named, wait_for
from tests.support.simulator import Simulation, end_state, unwrap_host_commands, worker_env, wrap_host_command

ROOT = Path(__file__).resolve().parents[2]
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
    "Prepare take over cluster": Slowdown("sql", r"'cluster_id', 'obconfig_url'"),
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

    def __init__(
        self,
        client: Client,
        task_queue: str,
        tmp_path: Path,
        sim: Simulation,
        metadb_url: str,
        timeout_scale: float = 0.2,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.tmp_path = tmp_path
        self.sim = sim
        self.metadb_url = metadb_url
        self.env = worker_env(
            metadb=metadb_url,
            key_file=tmp_path / "master.key",
            known_hosts=sim.ready["ssh"]["known_hosts"],
            temporal=client.service_client.config.target_host,
            queue=task_queue,
            poll_interval=0.1,
            # Tests take timeouts at a fifth: a short subtask (180 s) still has room for a retry after
            # a crash noticed by its heartbeat timeout (a third of its timeout).
            timeout_scale=timeout_scale,
        )
        self.db = Database(metadb_url)
        migrate(self.db)
        self.vault = Vault(load_master_key(load_settings(self.env)))
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
        killed = await self.kill_and_replace()
        task = await wait_for(handle, lambda t: all(s.status.value != "RUNNING" for s in named(t, name)), timeout=60)
        seconds = time.monotonic() - killed
        # The kill caught the subtask mid-way: a new attempt of it ran on the new worker.
        logs = [await log_of(handle, s.id) for s in named(task, name)]
        assert any("attempt 2" in log for log in logs), logs
        return seconds

    async def kill_and_replace(self) -> float:
        """A moment after the work of interest began, SIGKILL the running worker and start another;
        returns the time of the kill."""
        await asyncio.sleep(0.3)
        worker = self.workers[-1]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        killed = time.monotonic()
        self.spawn()
        return killed

    async def until(self, condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
        """Poll `condition` until it holds; fail naming `what`, with the worker's log, after `timeout`."""
        deadline = time.monotonic() + timeout
        while not await condition():
            assert time.monotonic() < deadline, f"{what} did not happen: {self.last_log()}"
            await asyncio.sleep(0.05)

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


async def retried_activities(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The activity types of a workflow that ran a second attempt, from its history."""
    history = await handle.fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    return sorted(
        {
            scheduled[e.activity_task_started_event_attributes.scheduled_event_id]
            for e in history.events
            if e.HasField("activity_task_started_event_attributes")
            and e.activity_task_started_event_attributes.attempt > 1
        }
    )
