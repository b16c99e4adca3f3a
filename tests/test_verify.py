"""Verifying a managed cluster: after a real takeover of a simulated 3x2 cluster, drift made from outside
(root SQL, the hosts' files, the simulator's control API, a host's new key) is reported with its kind, node
and repair; a repair task puts right what it can, the next verification is clean of it; a release after the
repairs still leaves the cluster as it was before the takeover; a server that joins is adopted as the
takeover adopts its servers, after the same precheck items; each managed cluster has its verification
schedule, gone once it is released."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pymysql
import pytest
import requests
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError

from activities import cluster_sql as sql
from activities.registry import build_activities
from activities.runtime import Runtime
from contracts.engine import ROLLBACK_UPDATE, verify_schedule_id, verify_workflow_id
from contracts.messages import SubtaskRef
from contracts.settings import Settings
from contracts.stages import ADOPT_SERVER, repair_stages
from contracts.task_view import TaskView
from contracts.topology import ServerNode
from contracts.verification import DriftKind, Finding, VerificationResult
from metadb import clusters, hosts, verifications
from metadb.vault import load_vault
from ob_takeover.client import TakeoverClient
from ob_takeover.telemetry import stale_verifications
from ob_takeover.verify_schedules import reconcile_schedules
from tests.support.cli import run_cli
from tests.support.driver import keep_history
from tests.support.service import served
from tests.support.simulator import Simulation, end_state, sim_runtime, simulation, takeover_body
from tests.test_release import take_over, without_calibration
from worker import build_worker
from workflows.verify import VerifyManagedCluster


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulation]:
    with simulation(tmp_path, zones=3, servers_per_zone=2) as running:
        yield running


def root_sql(sim: Simulation, *statements: str) -> None:
    connection = pymysql.connect(
        host=sim.address, port=sim.sql_port, user="root", password=sim.root_password, ssl_disabled=True
    )
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


async def verify(client: Client, task_queue: str, cluster_id: int, repair: bool = False) -> VerificationResult:
    return await client.execute_workflow(
        VerifyManagedCluster.run,
        {"clusterId": cluster_id, "repair": repair},
        id=f"verify-test-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )


def found(result: VerificationResult | Any) -> set[tuple[str, str | None, str | None]]:
    report = result.final if isinstance(result, VerificationResult) else result
    return {(f.kind.value, f.node, f.repair) for f in report.findings}


def conf(sim: Simulation, ip: str) -> Path:
    return sim.host_root(ip) / "home/admin/ocp_agent/conf"


async def test_drift_is_reported_repaired_and_a_release_still_restores_the_cluster(
    client: Client, task_queue: str, sim: Simulation, tmp_path: Path
) -> None:
    runtime: Runtime = sim_runtime(tmp_path, sim)
    body = takeover_body(sim, runtime)
    before = without_calibration(end_state(sim, runtime.db))
    servers = sim.ready["servers"]
    host_a, host_b = servers[0]["address"], servers[2]["address"]
    stopped = f"{servers[3]['address']}:{servers[3]['rpc_port']}"
    removed = servers[5]
    removed_label = f"{removed['address']}:{removed['rpc_port']}"
    zone = servers[4]["zone"]
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        cluster_id = await take_over(client, task_queue, body)
        first = await verify(client, task_queue, cluster_id)
        assert first.report.findings == [] and first.repair_task is None
        assert verifications.latest_report(runtime.db, cluster_id) == first.report.model_dump(mode="json")

        # A sys tenant that does not answer is a finding with nothing to repair, not a failed verification.
        sim.fault("'cluster_id', 'obconfig_url'")
        silent = await verify(client, task_queue, cluster_id, repair=True)
        assert [(f.kind, f.repair) for f in silent.report.findings] == [(DriftKind.CLUSTER_UNREACHABLE, None)]
        assert "Timeout" in silent.report.findings[0].found and silent.repair_task is None

        # Drift from outside: SQL as root, the hosts' files, the simulator's control API.
        root_sql(
            sim,
            sql.set_parameter("obconfig_url", "http://127.0.0.1:9/services?Action=ObRootServiceInfo"),
            sql.alter_user_password(sql.MONITOR_USER, "Changed#by-hand1"),
        )
        config = conf(sim, host_a) / "ob_cluster.json"
        config.write_text(config.read_text().replace('"observers"', '"observers_edited"'))
        (conf(sim, host_b) / "modules.json").unlink()
        sim.call("PATCH", f"/zones/{zone}", {"status": "INACTIVE"})
        sim.call("PATCH", f"/servers/{stopped}", {"stop_time": "2024-01-01 00:00:00"})
        sim.call("DELETE", f"/servers/{removed_label}")
        cluster_drift = {
            ("CONFIG_URL_CHANGED", None, "Register config url"),
            ("MONITOR_PASSWORD_CHANGED", None, "Create default user"),
            ("AGENT_CONFIG_CHANGED", host_a, "Refresh ocp agent config"),
            ("AGENT_MODULES_INACTIVE", host_b, "Active agent modules"),
        }
        by_hand = {
            ("ZONE_NOT_ACTIVE", zone, None),
            ("SERVER_NOT_ACTIVE", stopped, None),
            ("SERVER_REMOVED", removed_label, None),
        }
        drifted = await verify(client, task_queue, cluster_id)
        assert found(drifted) == cluster_drift | by_hand
        report = drifted.report.model_dump_json()
        assert "Changed#by-hand1" not in report and "the password stored by the takeover" in report

        repaired = await verify(client, task_queue, cluster_id, repair=True)
        task = repaired.repair_task
        assert task is not None and (task.name, task.status.value) == ("Repair OB cluster", "SUCCESSFUL")
        names = [(s.name, s.node) for s in task.subtasks if s.name != "Wait node"]
        assert names == [
            ("Mc lock ob clusters", None),
            ("Create default user", None),
            ("Register config url", None),
            ("Refresh ocp agent config", host_a),
            ("Refresh ocp agent config", host_b),
            ("Active agent modules", host_a),
            ("Active agent modules", host_b),
            ("Mc unlock ob clusters", None),
        ]
        # What only an operator can put right is still reported; the rest is clean.
        assert found(repaired) == by_hand
        assert found(await verify(client, task_queue, cluster_id)) == by_hand
        # No before-state of the repair's own on the hosts: a release restores the takeover's.
        assert not [p.name for p in conf(sim, host_a).iterdir() if f"-{task.id}" in p.name]

        sim.call("PATCH", f"/zones/{zone}", {"status": "ACTIVE"})
        sim.call("PATCH", f"/servers/{stopped}", {"stop_time": None})
        sim.call("POST", "/servers", {"ip": removed["address"], "rpc_port": removed["rpc_port"],
                                      "sql_port": removed["sql_port"], "zone": removed["zone"]})  # fmt: skip
        assert found(await verify(client, task_queue, cluster_id)) == set()

        # The user dropped, the agent's configuration deleted: repaired, clean again.
        root_sql(sim, sql.drop_user(sql.MONITOR_USER))
        config.unlink()
        assert found(await verify(client, task_queue, cluster_id)) == {
            ("MONITOR_USER_MISSING", None, "Create default user"),
            ("AGENT_CONFIG_CHANGED", host_a, "Refresh ocp agent config"),
        }
        again = await verify(client, task_queue, cluster_id, repair=True)
        assert again.repair_task is not None and again.repair_task.status.value == "SUCCESSFUL"
        assert found(again) == set()

        # A host that shows another key is reported, never accepted; nothing is repaired there.
        known_hosts = Path(sim.ready["ssh"]["known_hosts"])
        original = known_hosts.read_text()
        other_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
        lines = [
            f"{line.split()[0]} {other_key}" if line.startswith(f"[{host_b}]:") else line
            for line in original.splitlines()
        ]
        known_hosts.write_text("\n".join(lines) + "\n")
        try:
            (finding,) = (await verify(client, task_queue, cluster_id)).report.findings
            assert (finding.kind, finding.node, finding.repair) == (DriftKind.HOST_KEY_CHANGED, host_b, None)
            assert known_hosts.read_text() != original
            assert hosts.find_host(runtime.db, host_b)["host_key"] is None  # type: ignore[index]
        finally:
            known_hosts.write_text(original)

        # The schedule of the managed cluster, and none once it is released.
        done = await reconcile_schedules(client, runtime.db, task_queue=task_queue, interval=3600)
        assert done.created == [cluster_id]
        schedule = await client.get_schedule_handle(verify_schedule_id(cluster_id, task_queue)).describe()
        assert schedule.schedule.spec.intervals[0].every.total_seconds() == 3600
        again_done = await reconcile_schedules(client, runtime.db, task_queue=task_queue, interval=3600)
        assert (again_done.created, again_done.updated, again_done.deleted) == ([], [], [])

        takeovers = TakeoverClient(client, task_queue, db=runtime.db, vault=runtime.vault)
        release = await (await takeovers.release(cluster_id)).result()
        assert release.status.value == "SUCCESSFUL"
        # The repairs kept the before-state the takeover recorded: the release restores it all.
        released = without_calibration(end_state(sim, runtime.db))
        released["cluster"]["users"].pop("proxyro")
        released["metadb"]["credentials"] = [
            c for c in released["metadb"]["credentials"] if c["name"] != "obcluster:1:proxyro"
        ]
        assert released == before
        gone = await reconcile_schedules(client, runtime.db, task_queue=task_queue, interval=3600)
        assert gone.deleted == [cluster_id]
        assert verifications.latest_report(runtime.db, cluster_id) is None


@pytest.mark.unit
def test_an_adoption_runs_the_takeovers_subtasks_in_its_order_and_older_reports_still_parse() -> None:
    before_adoption = {"kind": "SERVER_ADDED", "node": "10.0.0.9:2882", "expected": "not managed", "found": "ACTIVE"}
    finding = Finding.model_validate(before_adoption)
    assert (finding.repair, finding.server) == (None, None)
    assert [stage.name for stage in repair_stages({ADOPT_SERVER, "Create default user"})] == [
        "Mc lock ob clusters",
        "Precheck new servers",
        "Reserve new hosts",
        "Create default user",
        "Update server process info",
        "Refresh ocp agent config",
        "Active agent modules",
        "Sync cluster info",
        "Mc unlock ob clusters",
    ]
    # Repairs without an adoption keep their table.
    assert [stage.name for stage in repair_stages({"Active agent modules"})] == [
        "Mc lock ob clusters",
        "Active agent modules",
        "Mc unlock ob clusters",
    ]


async def repair_task(handle: WorkflowHandle[Any, Any], done: Callable[[TaskView], bool]) -> TaskView:
    """The repair's task once `done` holds (the task does not exist while the cluster is read)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            task: TaskView = await handle.query(VerifyManagedCluster.task)
            if done(task):
                return task
        except WorkflowQueryFailedError:
            pass
        assert time.monotonic() < deadline, "the repair task did not get there"
        await asyncio.sleep(0.1)


async def test_a_server_that_joins_is_adopted_as_the_takeover_adopts_servers(
    client: Client, task_queue: str, sim: Simulation, tmp_path: Path
) -> None:
    runtime: Runtime = sim_runtime(tmp_path, sim)
    body = takeover_body(sim, runtime)
    first = sim.ready["servers"][0]
    block = sim.address.rsplit(".", 1)[0]

    def joining(last: int, **more: Any) -> dict[str, Any]:
        server = {"ip": f"{block}.{last}", "rpc_port": first["rpc_port"], "sql_port": first["sql_port"]}
        return {**server, "zone": first["zone"], **more}

    def recorded_servers() -> set[str]:
        return {f"{row['ip']}:{row['rpc_port']}" for row in clusters.rows_of(runtime.db, "servers", cluster_id)}

    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        cluster_id = await take_over(client, task_queue, body)
        takeover_task = clusters.get_cluster(runtime.db, cluster_id)["task_id"]  # type: ignore[index]

        # Two servers join whose adoption cannot pass the takeover's precheck: one on a host that does not
        # answer, one whose observer is not running. The repair stops there, writing nothing of them.
        unreachable, stopped = joining(21), joining(22, host=True, observer=False)
        sim.call("POST", "/servers", unreachable)
        sim.call("POST", "/servers", stopped)
        handle = await client.start_workflow(
            VerifyManagedCluster.run, {"clusterId": cluster_id, "repair": True},
            id=f"verify-test-{uuid.uuid4().hex[:8]}", task_queue=task_queue,
        )  # fmt: skip
        task = await repair_task(handle, lambda t: t.status.value == "FAILED")
        (failed,) = [s for s in task.subtasks if s.status.value == "FAILED"]
        assert (failed.name, failed.prohibit_skip) == ("Precheck new servers", True)
        log = await handle.query(VerifyManagedCluster.subtask_log, SubtaskRef(subtask_id=failed.id))
        assert f"SSH login on {unreachable['ip']}:" in log
        assert f"observer process on {stopped['ip']}:{stopped['rpc_port']}: no process listens on SQL port" in log
        assert "start the observer" in log and "retry this subtask, or roll the repair back" in log
        assert body["rootSysPassword"] not in log
        assert all(s.status.value == "PENDING" for s in task.subtasks if s.id > failed.id)
        assert [hosts.find_host(runtime.db, s["ip"]) for s in (unreachable, stopped)] == [None, None]
        assert len(recorded_servers()) == 6
        await handle.execute_update(ROLLBACK_UPDATE, result_type=TaskView)
        result: VerificationResult = await handle.result()
        assert found(result) == {
            ("SERVER_ADDED", f"{s['ip']}:{s['rpc_port']}", "Adopt new server") for s in (unreachable, stopped)
        }
        for server in (unreachable, stopped):
            sim.call("DELETE", f"/servers/{server['ip']}:{server['rpc_port']}")

        # A server joins with its host: reported, adopted, and the cluster is clean again.
        joined = joining(20, host=True)
        label = f"{joined['ip']}:{joined['rpc_port']}"
        root = Path(sim.call("POST", "/servers", joined)["host"]["root"])
        (finding,) = (await verify(client, task_queue, cluster_id)).report.findings
        assert (finding.kind, finding.node, finding.repair) == (DriftKind.SERVER_ADDED, label, "Adopt new server")
        assert finding.server == ServerNode(
            ip=joined["ip"], rpc_port=joined["rpc_port"], sql_port=joined["sql_port"], zone=joined["zone"]
        )
        handle = await client.start_workflow(
            VerifyManagedCluster.run, {"clusterId": cluster_id, "repair": True},
            id=f"verify-test-{uuid.uuid4().hex[:8]}", task_queue=task_queue,
        )  # fmt: skip
        repaired = await handle.result()
        await keep_history(handle, "verify_repair_3x2")
        adoption = repaired.repair_task
        assert adoption is not None and adoption.status.value == "SUCCESSFUL"
        assert [(s.name, s.node) for s in adoption.subtasks if s.name != "Wait node"] == [
            ("Mc lock ob clusters", None),
            ("Precheck new servers", None),
            ("Reserve new hosts", None),
            ("Update server process info", label),
            ("Refresh ocp agent config", joined["ip"]),
            ("Active agent modules", joined["ip"]),
            ("Sync cluster info", None),
            ("Mc unlock ob clusters", None),
        ]
        assert repaired.after_repair is not None and found(repaired) == set()
        assert found(await verify(client, task_queue, cluster_id)) == set()
        precheck = next(s for s in adoption.subtasks if s.name == "Precheck new servers")
        log = await handle.query(VerifyManagedCluster.subtask_log, SubtaskRef(subtask_id=precheck.id))
        assert f"PASSED observer process on {label}" in log and f"precheck passed for {label}" in log

        # Recorded as the takeover records its servers; the host registered as the takeover registered its own.
        row = next(r for r in clusters.rows_of(runtime.db, "servers", cluster_id) if r["ip"] == joined["ip"])
        assert row["status"] == "ACTIVE" and row["zone"] == joined["zone"]
        assert json.loads(row["process_info"])["install_path"] == str(root / "home/admin/oceanbase")
        host = hosts.find_host(runtime.db, joined["ip"])
        assert host is not None and host["reserved_by_cluster_id"] == cluster_id
        assert (host["registered_by_task_id"], host["credential_id"]) == (
            takeover_task,
            body["hostInfo"]["credentialId"],
        )
        config = json.loads((root / "home/admin/ocp_agent/conf/ob_cluster.json").read_text())
        assert [o["ip"] for o in config["observers"]] == [joined["ip"]]
        assert config["monitor"]["password"].startswith("aesgcm:")
        modules = json.loads((root / "home/admin/ocp_agent/conf/modules.json").read_text())
        assert all(modules.values())

        # A release undoes the adopted host as it undoes the takeover's own.
        takeovers = TakeoverClient(client, task_queue, db=runtime.db, vault=runtime.vault)
        release = await (await takeovers.release(cluster_id)).result()
        assert release.status.value == "SUCCESSFUL"
        assert hosts.find_host(runtime.db, joined["ip"]) is None
        assert not (root / "home/admin/ocp_agent/conf/ob_cluster.json").exists()


async def test_the_cli_and_the_rest_api_verify_repair_and_pause(
    client: Client, task_queue: str, sim: Simulation, tmp_path: Path
) -> None:
    service_dir = tmp_path / "service"
    service_dir.mkdir()
    address = client.service_client.config.target_host
    with served(service_dir, temporal_address=address, task_queue=task_queue) as service:
        settings = Settings(metadb=f"sqlite:///{service_dir / 'metadb.sqlite'}",
                            master_key_file=str(service_dir / "master.key"))  # fmt: skip
        vault = load_vault(settings)
        vault.verify(service.db)
        runtime = Runtime(db=service.db, vault=vault, known_hosts=sim.ready["ssh"]["known_hosts"], poll_interval=0.1)
        env = {**os.environ, "OB_TAKEOVER_METADB": settings.metadb, "OB_TAKEOVER_MASTER_KEY_FILE":
               settings.master_key_file, "OB_TAKEOVER_TASK_QUEUE": task_queue, "TEMPORAL_ADDRESS": address}  # fmt: skip
        api = f"{service.base}/api/v2/ob/clusters"

        async def call(method: str, url: str, who: str, body: dict[str, Any] | None = None) -> requests.Response:
            # Off the event loop: the worker runs on it and answers the service's queries.
            return await asyncio.to_thread(requests.request, method, url, json=body, auth=service.auth(who))

        async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
            cluster_id = await take_over(client, task_queue, takeover_body(sim, runtime))
            code, out, _, err = await asyncio.to_thread(run_cli, env, "verify", str(cluster_id))
            assert (code, out and out["drift"]) == (0, 0), err
            latest = await call("GET", f"{api}/{cluster_id}/verification", "viewer")
            assert latest.json()["data"]["findings"] == []

            root_sql(sim, sql.set_parameter("obconfig_url", ""))
            code, out, text, err = await asyncio.to_thread(run_cli, env, "verify", "--all")
            assert code == 1 and out is not None and out["drift"] == 1, err
            assert "CONFIG_URL_CHANGED" in text and "Register config url" in text

            refused = await call("POST", f"{api}/{cluster_id}/verification", "viewer", {"repair": True})
            assert refused.status_code == 403
            answer = await call("POST", f"{api}/{cluster_id}/verification", "manager", {"repair": True})
            assert answer.status_code == 200, answer.text
            data = answer.json()["data"]
            assert [f["kind"] for f in data["report"]["findings"]] == ["CONFIG_URL_CHANGED"]
            assert data["repairTask"]["name"] == "Repair OB cluster"
            result = await client.get_workflow_handle(
                verify_workflow_id(cluster_id, "repair"), result_type=VerificationResult
            ).result()
            assert result.repair_task is not None and result.repair_task.status.value == "SUCCESSFUL"
            after = (await call("GET", f"{api}/{cluster_id}/verification", "viewer")).json()["data"]
            assert after["findings"] == [] and after["checkedAt"] == result.final.checked_at
            assert (await call("GET", f"{api}/4242/verification", "viewer")).status_code == 404

            # A verification older than twice the interval shows on the worker's /readyz.
            assert stale_verifications(runtime.db, 3600) == []
            (stale,) = stale_verifications(runtime.db, 3600, now=time.time() + 3 * 3600)
            assert stale["clusterId"] == cluster_id

            await reconcile_schedules(client, runtime.db, task_queue=task_queue, interval=600)
            schedule = client.get_schedule_handle(verify_schedule_id(cluster_id, task_queue))
            try:
                code, out, _, err = await asyncio.to_thread(run_cli, env, "verify", "pause", str(cluster_id))
                assert code == 0, err
                assert (await schedule.describe()).schedule.state.paused
                # The reconciler leaves a paused schedule paused.
                await reconcile_schedules(client, runtime.db, task_queue=task_queue, interval=900)
                assert (await schedule.describe()).schedule.state.paused
                code, out, _, err = await asyncio.to_thread(run_cli, env, "verify", "resume", str(cluster_id))
                assert code == 0, err
                described = await schedule.describe()
                assert not described.schedule.state.paused
                assert described.schedule.spec.intervals[0].every.total_seconds() == 900
            finally:
                await schedule.delete()
