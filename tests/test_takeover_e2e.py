"""A whole takeover through the real worker: real SQL to the simulator, real SSH to its hosts."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from temporalio import activity
from temporalio.client import Client

from activities import cluster_sql as sql
from activities.facts import Fact
from activities.ob_sys_client import ObSysClient
from activities.ports import HostLogin
from activities.precheck import run_checks
from activities.preview import preview_takeover
from activities.registry import build_activities
from activities.runtime import Runtime
from contracts.messages import PrecheckInput
from contracts.request import parse_request
from contracts.stages import SUBTASKS
from contracts.topology import ClusterEndpoint
from metadb import clusters, credentials, hosts
from tests.support.driver import log_of, start, update, wait_for
from tests.support.simulator import Simulation, sim_runtime, simulation, stored_secret, takeover_body
from worker import build_worker


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulation]:
    with simulation(tmp_path) as running:
        yield running


@pytest.fixture
def runtime(tmp_path: Path, sim: Simulation) -> Runtime:
    return sim_runtime(tmp_path, sim)


async def failure_report(handle: Any, task: Any) -> str:
    return "\n".join([await log_of(handle, s.id) for s in task.subtasks if s.status.value == "FAILED"])


def login(sim: Simulation, user: str, password: str) -> bool:
    try:
        pymysql.connect(host=sim.address, port=sim.sql_port, user=user, password=password, ssl_disabled=True).close()
        return True
    except pymysql.err.OperationalError:
        return False


async def test_full_takeover_of_three_zones_with_hosts(
    client: Client, task_queue: str, sim: Simulation, runtime: Runtime
) -> None:
    body = takeover_body(sim, runtime)
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await start(client, task_queue, body)
        task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=90)
        assert task.status.value == "SUCCESSFUL", await failure_report(handle, task)
        result = await handle.result()
    state = sim.state()
    assert state["users"]["ocp_monitor"]["grants"] == ["SELECT ON *.*"]
    assert state["users"]["proxyro"]["grants"] == ["SELECT ON oceanbase.*"]
    proxyro = stored_secret(runtime, "obcluster:1:proxyro")
    assert login(sim, "proxyro@sys", proxyro)
    monitor = credentials.find_credential(runtime.db, runtime.vault, credentials.CLUSTER, "obcluster:1:ocp_monitor")
    assert monitor is not None and login(sim, "ocp_monitor", monitor.secret)
    assert state["parameters"]["obconfig_url"] == (
        "http://127.0.0.1:8080/services?Action=ObRootServiceInfo&ObCluster=obcluster&ObClusterId=1"
    )
    assert sorted(state["io_calibration"].values()) == ["READY"] * 6
    assert state["variables"]["resource_manager_plan"] == "OB_TAKEOVER_MONITOR_PLAN"
    assert state["resource_manager"]["mappings"] == [
        {"attribute": "USER", "value": "ocp_monitor", "consumer_group": "OB_TAKEOVER_MONITOR_GROUP"}
    ]

    db = runtime.db
    cluster = clusters.find_cluster(db, "obcluster", 1)
    assert cluster is not None and cluster["status"] == "RUNNING"
    assert result.cluster_id == cluster["id"]
    assert len(clusters.rows_of(db, "zones", cluster["id"])) == 3
    servers = clusters.rows_of(db, "servers", cluster["id"])
    assert len(servers) == 6 and {s["status"] for s in servers} == {"ACTIVE"}
    assert len(clusters.rows_of(db, "tenants", cluster["id"])) == 5
    record = clusters.get_cluster(db, cluster["id"])
    assert record is not None
    rs_list = record["rs_list"]
    assert len(rs_list) == 6 and sum(r["role"] == "LEADER" for r in rs_list) == 1
    for server in servers:
        info = json.loads(server["process_info"])
        root = sim.host_root(server["ip"])
        assert info["name"] == "observer"
        assert info["install_path"] == str(root / "home/admin/oceanbase")
        assert info["data_dir"] == str(root / "home/admin/oceanbase/store")
        assert f"-p {sim.sql_port}" in info["command_line"]
        assert info["data_disk_free_kb"] > 0 and info["log_disk_free_kb"] > 0
    for host in sim.ready["hosts"]:
        row = hosts.find_host(db, host["address"])
        assert row is not None and row["reserved_by_cluster_id"] == cluster["id"]
        assert row["facts"]["cpus"] >= 1 and abs(row["facts"]["clock_offset_s"]) < 1
        conf = Path(host["root"]) / "home/admin/ocp_agent/conf"
        agent = json.loads((conf / "ob_cluster.json").read_text())
        assert agent["cluster"]["name"] == "obcluster"
        assert agent["monitor"]["password"].startswith("aesgcm:")
        assert monitor.secret not in (conf / "ob_cluster.json").read_text()
        assert json.loads((conf / "modules.json").read_text()) == {
            "host_metrics": True, "ob_logs": True, "ob_metrics": True, "sql_audit": True,
        }  # fmt: skip
    assert db.query("SELECT * FROM cluster_locks") == []


async def test_no_secret_in_clear_text_in_the_metadb_file(
    client: Client, task_queue: str, sim: Simulation, runtime: Runtime, tmp_path: Path
) -> None:
    body = takeover_body(sim, runtime)
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await start(client, task_queue, body)
        assert (await handle.result()).status.value == "SUCCESSFUL"
    monitor = credentials.find_credential(runtime.db, runtime.vault, credentials.CLUSTER, "obcluster:1:ocp_monitor")
    assert monitor is not None
    secrets = {
        "root@sys": sim.root_password,
        "ocp_monitor": monitor.secret,
        "proxyro": stored_secret(runtime, "obcluster:1:proxyro"),
        "ssh key": Path(sim.ready["ssh"]["private_key_file"]).read_text().splitlines()[1],
    }
    runtime.db.close()
    files = list(tmp_path.glob("metadb.sqlite*"))
    assert files
    data = b"".join(path.read_bytes() for path in files)
    for name, secret in secrets.items():
        assert secret.encode() not in data, f"{name} found in clear text in the metadb"
    # The agent configuration on every host keeps the monitor password encrypted too.
    for host in sim.ready["hosts"]:
        for path in (Path(host["root"]) / "home/admin/ocp_agent").rglob("*"):
            if path.is_file():
                assert monitor.secret.encode() not in path.read_bytes()


class PortRecorder:
    """Wraps the worker's real ports and keeps, per activity, the statements and commands it sent."""

    def __init__(self, runtime: Runtime) -> None:
        self.sent: dict[str, set[str]] = defaultdict(set)
        self._cluster = runtime.cluster_connector
        self._host = runtime.host_connector

    def keep(self, text: str) -> None:
        self.sent[activity.info().activity_type].add(text)

    def cluster(self, endpoint: ClusterEndpoint, user: str) -> Any:
        port = self._cluster(endpoint, user)
        recorder = self

        class Recorded:
            where = port.where

            def query(self, statement: str, args: Any = None) -> list[dict[str, Any]]:
                recorder.keep(sql.mask(statement))
                return port.query(statement, args)

            def execute(self, statement: str, args: Any = None) -> None:
                self.query(statement, args)

            def read(self, fact: Fact[Any]) -> Any:
                return fact.parse(self.query(fact.statement))

            def close(self) -> None:
                port.close()

            def __enter__(self) -> Recorded:
                return self

            def __exit__(self, *exc: object) -> None:
                port.close()

        return Recorded()

    def host(self, login: HostLogin) -> Any:
        port = self._host(login)
        recorder = self

        class Recorded:
            address = port.address

            async def run(self, command: str, *, input: str | None = None, **options: Any) -> Any:
                recorder.keep(command + ("  < stdin" if input is not None else ""))
                return await port.run(command, input=input, **options)

            async def __aenter__(self) -> Recorded:
                await port.__aenter__()
                return self

            async def __aexit__(self, *exc: object) -> None:
                await port.__aexit__(*exc)

        return Recorded()


async def test_the_plan_preview_shows_what_each_subtask_sends(
    client: Client, task_queue: str, sim: Simulation, runtime: Runtime
) -> None:
    """The preview runs the real subtask code: per subtask, it lists exactly the statements and host commands
    the takeover then sends (secrets masked; the pid and the task id, known at run time, as placeholders)."""
    body = takeover_body(sim, runtime)
    report = await run_checks(runtime, PrecheckInput.of_request(parse_request(body)), preview=preview_takeover)
    assert report.passed, report.failures()
    previewed: dict[str, set[str]] = defaultdict(set)
    for step in report.plan:
        assert not step.note.startswith("the takeover would stop"), step
        previewed[step.subtask].update(step.statements + step.commands)
    assert any("IDENTIFIED BY '***'" in s for s in previewed["Create default user"])
    assert [s.node for s in report.plan if s.subtask == "Run io calibration"] == [
        f"{s['address']}:{s['rpc_port']}" for s in sim.ready["servers"]
    ]
    assert any("ps -o user= -p $pid" in c for c in previewed["Update server process info"])
    recorder = PortRecorder(runtime)
    recording = dataclasses.replace(runtime, cluster_connector=recorder.cluster, host_connector=recorder.host)
    async with build_worker(client, activities=build_activities(recording), queue=task_queue):
        handle = await start(client, task_queue, body)
        result = await handle.result()
    assert result.status.value == "SUCCESSFUL"
    names = {stage.activity: stage.name for stage in SUBTASKS}
    sent: dict[str, set[str]] = defaultdict(set)
    for activity_name, texts in recorder.sent.items():
        stage = names.get(activity_name, "Discover topology")
        for text in texts:
            # The task id stands in agent file names (`….before-<id>`, `agent.key.created-<id>`).
            text = re.sub(rf"(created-|before-){result.id}\b", r"\1<task-id>", text)
            sent[stage].add(re.sub(r"(-p |/proc/)\d+", r"\1<pid>", text))
    assert sum(len(texts) for texts in sent.values()) > 60
    for stage in ["Discover topology", *names.values()]:
        assert sent[stage] == previewed[stage], (
            f"{stage}: sent but not previewed {sorted(sent[stage] - previewed[stage])}; "
            f"previewed but not sent {sorted(previewed[stage] - sent[stage])}"
        )


async def test_a_monitor_user_that_existed_is_restored_exactly_by_a_rollback(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """An agent that used ocp_monitor before the takeover logs in again after a rollback: the user's password
    hash and grants are what they were (the takeover reset the password and granted SELECT on *.*)."""
    with simulation(tmp_path / "sim", zones=1, servers_per_zone=1) as own:
        runtime = sim_runtime(tmp_path, own)
        root = ClusterEndpoint(address=own.address, port=own.sql_port, root_sys_password=own.root_password)

        def snapshot() -> tuple[str, list[str]]:
            with ObSysClient(root) as admin:
                password = str(admin.query(sql.user_password_hash(sql.MONITOR_USER))[0]["PASSWORD"])
                grants = [str(next(iter(r.values()))) for r in admin.query(sql.show_grants(sql.MONITOR_USER))]
            return password, grants

        with ObSysClient(root) as admin:
            admin.execute(sql.create_user(sql.MONITOR_USER, "Agent's-Own-1"))
            admin.execute(sql.grant("SELECT", "oceanbase.*", sql.MONITOR_USER))
            admin.execute(sql.grant("PROCESS", "*.*", sql.MONITOR_USER))
        before = snapshot()
        # The takeover fails after "Create default user", at the io calibration; the operator rolls it back.
        own.fault("RUN JOB", error=1235, message="not supported")
        async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
            handle = await start(client, task_queue, takeover_body(own, runtime))
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=60)
            assert task.status.value == "FAILED"
            (created,) = [s for s in task.subtasks if s.name == "Create default user"]
            assert "its password hash and 2 grant line(s) kept for a rollback" in await log_of(handle, created.id)
            assert snapshot() != before
            await update(handle, "rollback")
            done = await handle.result()
            assert (done.operation.value, done.status.value) == ("ROLLBACK", "SUCCESSFUL")
            log = await log_of(handle, created.id)
        assert "restored as before the takeover" in log, log
        assert snapshot() == before
        assert login(own, sql.MONITOR_USER, "Agent's-Own-1")
        assert runtime.db.query("SELECT * FROM credentials WHERE kind = 'CLUSTER'") == []
