"""The precheck: one test per check, each made to fail through the simulator's control API or a host."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from activities.ob_sys_client import ConnectionSecurity
from activities.precheck import CheckItems, check_cluster_tls, run_checks
from activities.registry import build_activities
from activities.runtime import Runtime
from contracts.messages import PrecheckInput, PrecheckReport
from contracts.request import parse_request
from contracts.tls import tls_context
from metadb import clusters, credentials, hosts, locks
from tests.support.mariadb import free_port
from tests.support.simulator import (
    Simulation,
    register_ssh_key,
    sim_runtime,
    simulation,
    takeover_body,
    unwrap_host_commands,
    wrap_host_command,
)
from worker import build_worker
from workflows.precheck import TakeOverPrecheck


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    with simulation(tmp_path_factory.mktemp("precheck")) as running:
        yield running


@pytest.fixture
def runtime(tmp_path: Path, sim: Simulation) -> Runtime:
    return sim_runtime(tmp_path, sim)


@pytest.fixture
def body(sim: Simulation, runtime: Runtime) -> dict[str, Any]:
    credential = register_ssh_key(runtime, sim)
    return {
        "rootSysPassword": sim.root_password,
        "address": sim.address,
        "port": sim.sql_port,
        "hostInfo": {
            "hostTypeId": hosts.add_host_type(runtime.db, "t"),
            "credentialId": credential,
            "sshPort": sim.ssh_port,
        },
    }


async def check(runtime: Runtime, body: dict[str, Any]) -> PrecheckReport:
    return await run_checks(runtime, PrecheckInput.of_request(parse_request(body)))


def item(report: PrecheckReport, name: str, node: str | None = None) -> Any:
    found = [i for i in report.items if i.name == name and (node is None or i.node == node)]
    assert found, f"no item {name} on {node}: {[(i.name, i.node) for i in report.items]}"
    return found[0]


def label(sim: Simulation, index: int) -> str:
    server = sim.ready["servers"][index]
    return f"{server['address']}:{server['rpc_port']}"


async def test_healthy_cluster_passes_and_nothing_is_written(
    sim: Simulation, runtime: Runtime, body: dict[str, Any]
) -> None:
    before_rows = {
        t: runtime.db.query(f"SELECT * FROM {t}") for t in ("clusters", "hosts", "cluster_locks", "credentials")
    }
    before_statements = sum(len(v) for v in sim.state()["statements"].values())
    began = time.monotonic()
    report = await check(runtime, body)
    elapsed = time.monotonic() - began
    assert report.passed, [i for i in report.items if i.status != "PASSED"]
    assert report.cluster_name == "obcluster" and report.version == "4.2.1.8"
    assert len(report.servers) == 6 and len(report.hosts) == 6 and report.zones == ["zone1", "zone2", "zone3"]
    # The simulated observers run as root: OCP's admin check is a warning, not a failure.
    assert item(report, "observer OS user", label(sim, 0)).status == "WARNING"
    assert item(report, "observer OS user", label(sim, 0)).code == 11054
    assert {i.status for i in report.items if i.name == "observer process"} == {"PASSED"}
    assert item(report, "one architecture").status == "PASSED"
    assert item(report, "install paths consistent").status == "PASSED"
    assert elapsed < 10
    after_rows = {t: runtime.db.query(f"SELECT * FROM {t}") for t in before_rows}
    assert after_rows == before_rows
    new = [s for v in sim.state()["statements"].values() for s in v][before_statements:]
    assert new and all(s.split()[0].upper() in ("SELECT", "SHOW") for s in new), new


async def test_nothing_listening(runtime: Runtime, body: dict[str, Any]) -> None:
    report = await check(runtime, {**body, "address": "127.0.0.1", "port": free_port()})
    failed = item(report, "cluster reachable")
    assert failed.status == "FAILED" and failed.code == 11028 and "cannot reach the cluster" in failed.message
    assert not report.passed and len(report.items) == 1


async def test_wrong_password(runtime: Runtime, body: dict[str, Any]) -> None:
    report = await check(runtime, {**body, "rootSysPassword": "wrong"})
    assert item(report, "root@sys login").status == "FAILED"
    assert "check rootSysPassword" in item(report, "root@sys login").message


async def test_proxy_mode_with_another_cluster_name(runtime: Runtime, body: dict[str, Any]) -> None:
    report = await check(runtime, {**body, "connectionMode": "proxy", "clusterName": "othercluster"})
    assert "clusterName/obClusterId" in item(report, "root@sys login").message
    ok = await check(runtime, {**body, "connectionMode": "proxy", "clusterName": "obcluster", "obClusterId": 1})
    assert item(ok, "clusterName matches the cluster").status == "PASSED"


async def test_mariadb_is_not_oceanbase(runtime: Runtime, body: dict[str, Any], mariadb: tuple[str, int]) -> None:
    import pymysql

    host, port = mariadb
    connection = pymysql.connect(host=host, port=port, user="root", password="")
    with connection.cursor() as cursor:
        # The login name a takeover uses, so that MariaDB lets it in and the version check decides.
        for where in ("%", "localhost", "127.0.0.1"):
            cursor.execute(f"CREATE USER IF NOT EXISTS 'root@sys'@'{where}' IDENTIFIED BY 'maria-pw'")
    connection.close()
    report = await check(runtime, {**body, "rootSysPassword": "maria-pw", "address": host, "port": port})
    assert item(report, "root@sys login").status == "PASSED"
    failed = item(report, "OceanBase 4.x")
    assert failed.status == "FAILED" and "MariaDB" in failed.message and "which is not OceanBase" in failed.message
    assert not report.passed


async def test_oceanbase_3_is_rejected(tmp_path: Path, runtime: Runtime) -> None:
    with simulation(tmp_path, zones=1, servers_per_zone=1, hosts=False, extra=["--version", "3.1.4"]) as old:
        report = await check(
            runtime, {"rootSysPassword": old.root_password, "address": old.address, "port": old.sql_port}
        )
    failed = item(report, "OceanBase 4.x")
    assert failed.status == "FAILED" and "OceanBase 3.1.4 found; only OceanBase 4.x" in failed.message


async def test_already_managed_and_locked(runtime: Runtime, body: dict[str, Any]) -> None:
    locks.acquire(runtime.db, locks.lock_keys(body["address"], body["port"], None, None), 9, "takeover-other", "x")
    report = await check(runtime, body)
    locked = item(report, "not locked by a running task")
    assert locked.status == "FAILED" and "locked by task 9 (takeover-other)" in locked.message
    locks.release(runtime.db, "takeover-other")
    cluster_id = clusters.create_cluster_record(
        runtime.db, name="obcluster", ob_cluster_id=1, address="x", port=1, connection_mode="direct",
        version="4.2.1.8", task_id=5,
    )  # fmt: skip
    clusters.set_cluster_status(runtime.db, cluster_id, clusters.RUNNING)
    managed = item(await check(runtime, body), "not managed yet")
    assert managed.status == "FAILED" and managed.code == 11033 and "already managed here" in managed.message


async def test_config_url_of_another_platform(sim: Simulation, runtime: Runtime, body: dict[str, Any]) -> None:
    sim.call("PUT", "/parameters/obconfig_url", {"value": "http://10.9.9.9:8080/services?Action=ObRootServiceInfo"})
    try:
        assert item(await check(runtime, body), "config URL").status == "WARNING"
        refused = item(await check(runtime, {**body, "switchConfigUrl": False}), "config URL")
        assert refused.status == "FAILED" and refused.code == 11016 and "set switchConfigUrl to true" in refused.message
    finally:
        sim.call("PUT", "/parameters/obconfig_url", {"value": ""})


async def test_inactive_server_and_zone_without_region(sim: Simulation, runtime: Runtime, body: dict[str, Any]) -> None:
    sim.call("PATCH", f"/servers/{label(sim, 2)}", {"status": "INACTIVE", "stop_time": "2026-11-28 00:00:00"})
    sim.call("PATCH", "/zones/zone3", {"region": ""})
    try:
        report = await check(runtime, body)
        inactive = item(report, "server active", label(sim, 2))
        assert inactive.status == "FAILED" and inactive.code == 11050 and "status INACTIVE" in inactive.message
        assert item(report, "server active", label(sim, 0)).status == "PASSED"
        region = item(report, "zone region", "zone3")
        assert region.status == "FAILED" and region.code == 11035
    finally:
        sim.call("PATCH", f"/servers/{label(sim, 2)}", {"status": "ACTIVE", "stop_time": None})
        sim.call("PATCH", "/zones/zone3", {"region": "sys_region"})


async def test_host_info_missing_or_wrong(runtime: Runtime, body: dict[str, Any], sim: Simulation) -> None:
    no_info = {k: v for k, v in body.items() if k != "hostInfo"}
    unknown = item(await check(runtime, no_info), "host known or in hostInfo", sim.address)
    assert unknown.status == "FAILED" and unknown.code == 11044
    bad_type = {**body, "hostInfo": {**body["hostInfo"], "hostTypeId": 999}}
    assert item(await check(runtime, bad_type), "host type exists", sim.address).code == 11046
    bad_credential = {**body, "hostInfo": {**body["hostInfo"], "credentialId": 999}}
    assert item(await check(runtime, bad_credential), "host credential exists", sim.address).status == "FAILED"


async def test_ssh_login_refused(runtime: Runtime, body: dict[str, Any], sim: Simulation) -> None:
    wrong = credentials.save_credential(
        runtime.db, runtime.vault, kind=credentials.HOST, name="pw", username="admin", secret="nope"
    )
    report = await check(runtime, {**body, "hostInfo": {**body["hostInfo"], "credentialId": wrong}})
    refused = item(report, "SSH login", sim.address)
    assert refused.status == "FAILED" and "SSH login as admin refused" in refused.message


async def test_observer_not_running(tmp_path: Path, runtime: Runtime) -> None:
    with simulation(tmp_path, zones=1, servers_per_zone=2) as own:
        runtime.known_hosts = own.ready["ssh"]["known_hosts"]
        credential = credentials.save_credential(
            runtime.db, runtime.vault, kind=credentials.HOST, name="k2", username="admin",
            secret=Path(own.ready["ssh"]["private_key_file"]).read_text(), secret_type="private_key",
        )  # fmt: skip
        victim = own.ready["servers"][1]
        pid_file = own.host_root(victim["address"]) / "home/admin/oceanbase/run/observer.pid"
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
        time.sleep(0.3)
        report = await check(
            runtime,
            {
                "rootSysPassword": own.root_password, "address": own.address, "port": own.sql_port,
                "hostInfo": {
                    "hostTypeId": hosts.add_host_type(runtime.db, "t2"), "credentialId": credential,
                    "sshPort": own.ssh_port,
                },
            },
        )  # fmt: skip
    missing = item(report, "observer process", f"{victim['address']}:{victim['rpc_port']}")
    assert missing.status == "FAILED" and missing.code == 11053 and "start the observer" in missing.message


async def test_clock_offset_and_architecture(sim: Simulation, runtime: Runtime, body: dict[str, Any]) -> None:
    skewed = sim.ready["hosts"][1]
    bin_dir = Path(skewed["root"]) / "usr/local/bin"
    (bin_dir / "date").write_text(
        '#!/bin/bash\nif [ "$1" = "+%s.%N" ]; then echo "$(( $(/bin/date +%s) + 30 )).0"; '
        'else exec /bin/date "$@"; fi\n'
    )
    (bin_dir / "uname").write_text(
        '#!/bin/bash\nif [ "$1" = "-m" ]; then echo aarch64; else exec /bin/uname "$@"; fi\n'
    )
    for script in ("date", "uname"):
        (bin_dir / script).chmod(0o755)
    try:
        report = await check(runtime, body)
    finally:
        (bin_dir / "date").unlink()
        (bin_dir / "uname").unlink()
    clock = item(report, "clock offset", skewed["address"])
    assert clock.status == "FAILED" and "limit 1s" in clock.message
    assert item(report, "clock offset", sim.address).status == "PASSED"
    arch = item(report, "one architecture")
    assert arch.status == "FAILED" and arch.code == 11023 and "aarch64" in arch.message


async def test_observers_installed_in_different_paths(sim: Simulation, runtime: Runtime, body: dict[str, Any]) -> None:
    odd = sim.ready["hosts"][2]
    wrap_host_command(Path(odd["root"]), "readlink", "/cwd", f'echo "{odd["root"]}/home/admin/oceanbase-3.1"; exit 0')
    try:
        report = await check(runtime, body)
    finally:
        unwrap_host_commands(sim)
    paths = item(report, "install paths consistent")
    assert paths.status == "FAILED" and paths.code == 11049, paths
    assert "oceanbase-3.1" in paths.message and "use one path" in paths.message


async def test_two_observers_on_one_host(tmp_path: Path, runtime: Runtime) -> None:
    with simulation(tmp_path, zones=1, servers_per_zone=2, extra=["--observers-per-host", "2"]) as shared:
        runtime.known_hosts = shared.ready["ssh"]["known_hosts"]
        first, second = shared.ready["servers"]
        assert first["address"] == second["address"] and first["sql_port"] != second["sql_port"]
        report = await check(runtime, takeover_body(shared, runtime, host_type="two"))
    (one,) = [i for i in report.items if i.name == "one observer per host"]
    assert one.status == "FAILED" and one.node == first["address"]
    assert f"SQL ports {first['sql_port']}, {second['sql_port']}" in one.message
    # Each observer is found on its own SQL port.
    for server in (first, second):
        found = item(report, "observer process", f"{server['address']}:{server['rpc_port']}")
        assert found.status == "PASSED", found


async def test_proxyro_password(sim: Simulation, runtime: Runtime, body: dict[str, Any]) -> None:
    missing = item(await check(runtime, {**body, "proxyroPassword": "px-Secret1"}), "proxyro login")
    assert missing.status == "WARNING" and "creates it" in missing.message
    import pymysql

    connection = pymysql.connect(
        host=sim.address, port=sim.sql_port, user="root", password=sim.root_password, ssl_disabled=True
    )
    with connection.cursor() as cursor:
        cursor.execute("CREATE USER proxyro IDENTIFIED BY 'px-Secret1'")
    try:
        assert item(await check(runtime, {**body, "proxyroPassword": "px-Secret1"}), "proxyro login").status == "PASSED"
        wrong = item(await check(runtime, {**body, "proxyroPassword": "other"}), "proxyro login")
        assert wrong.status == "FAILED" and "other" not in wrong.message
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP USER proxyro")
        connection.close()


async def test_precheck_workflow_reports_on_the_dev_server(
    client: Client, task_queue: str, runtime: Runtime, body: dict[str, Any]
) -> None:
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        began = time.monotonic()
        report = await client.execute_workflow(
            TakeOverPrecheck.run, body, id=f"precheck-{task_queue}", task_queue=task_queue
        )
        elapsed = time.monotonic() - began
    assert report.passed and len(report.servers) == 6
    print(f"precheck of 3 zones x 2 servers with hosts: {elapsed:.2f}s")


async def test_operator_precheck_prints_the_report_and_the_plan(
    client: Client, task_queue: str, runtime: Runtime, body: dict[str, Any]
) -> None:
    import asyncio
    import json
    import sys

    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "OB_TAKEOVER_TASK_QUEUE": task_queue,
        "OB_TAKEOVER_ROOT_PASSWORD": body["rootSysPassword"],
        # The worker's metadb and master key: the precheck's password goes through the password box.
        "OB_TAKEOVER_METADB": str(runtime.db.url),
        "OB_TAKEOVER_MASTER_KEY": runtime.vault.key.encoded(),
    }
    info = body["hostInfo"]
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from ob_takeover.cli import main; main()", "precheck", "--plan",
            "--address", body["address"], "--port", str(body["port"]), "--host-type-id", str(info["hostTypeId"]),
            "--credential-id", str(info["credentialId"]), "--ssh-port", str(info["sshPort"]),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await process.communicate()
    text = out.decode()
    assert process.returncode == 0, err.decode()
    assert json.loads(text.strip().splitlines()[-1])["passed"] is True
    assert "WARNING" in text and "observer OS user" in text
    assert "SQL  CREATE USER IF NOT EXISTS ocp_monitor IDENTIFIED BY '***'" in text
    assert "Run io calibration · " in text and "SSH  out=$(ss -Hltnp" in text
    assert body["rootSysPassword"] not in text
    # The password was in the box for the precheck's time only.
    assert [c for c in credentials.list_credentials(runtime.db) if c["name"].startswith("precheck-")] == []


async def test_a_cluster_connection_without_tls_is_a_warning(
    sim: Simulation, runtime: Runtime, body: dict[str, Any]
) -> None:
    """The simulator serves MySQL without TLS, and `cluster_tls = preferred` (the default) then goes plaintext:
    the precheck still passes, and says which settings would protect root@sys's login."""
    report = await check(runtime, body)
    tls = item(report, "TLS to the cluster")
    assert tls.status == "WARNING" and tls.code is None and tls.node == f"{sim.address}:{sim.sql_port}"
    assert tls.message.startswith("the connection is not encrypted: a man in the middle can relay root@sys's login")
    assert "cluster_tls (OB_TAKEOVER_CLUSTER_TLS) to verify_identity (or verify_ca)" in tls.message
    assert "cluster_tls_ca (OB_TAKEOVER_CLUSTER_TLS_CA)" in tls.message
    assert report.passed


@pytest.mark.unit
@pytest.mark.parametrize(
    ("mode", "status", "message"),
    [
        ("off", "WARNING", "the connection is not encrypted"),
        ("preferred", "WARNING", "TLS without a certificate check"),
        ("required", "WARNING", "TLS without a certificate check"),
        ("verify_ca", "PASSED", "TLS, certificate checked against cluster_tls_ca"),
        ("verify_identity", "PASSED", "TLS, certificate and host name checked"),
    ],
)
def test_the_tls_item_follows_what_the_connection_checked(mode: str, status: str, message: str) -> None:
    """Judged from the socket a connection runs over: plain, or TLS with the context `cluster_tls` made."""
    context = tls_context(mode)
    sock = socket.socket()
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1", do_handshake_on_connect=False)
    with sock:
        out = CheckItems()
        check_cluster_tls(out, ConnectionSecurity.of(sock), "127.0.0.1:2881")
    (tls,) = out.items
    assert tls.name == "TLS to the cluster" and tls.status == status and tls.message.startswith(message)
    if status == "WARNING":
        assert "verify_identity (or verify_ca) and cluster_tls_ca" in tls.message
