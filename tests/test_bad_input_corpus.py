"""The bad-input corpus: malformed bodies and hostile situations. Each gets a clear error or a FAILED
subtask naming the cause; none hangs; none leaves a lock, a row or a user behind (a FAILED takeover
is rolled back, as an operator would)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.registry import build_activities
from activities.runtime import Runtime
from metadb import credentials
from tests.support.driver import log_of, start, update, wait_for
from tests.support.mariadb import free_port
from tests.support.simulator import Simulation, registered_runtime, sim_body, simulation
from worker import build_worker

GOOD = {"rootSysPassword": "pw", "address": "127.0.0.1", "port": 2881}
HOST_INFO = {"hostTypeId": 1, "credentialId": 1}

# (case, body, field the error must name)
BODIES: list[tuple[str, Any, str]] = [
    ("empty body", {}, "rootSysPassword"),
    ("no password", {"address": "127.0.0.1", "port": 2881}, "rootSysPassword"),
    ("no address", {"rootSysPassword": "pw", "port": 2881}, "address"),
    ("no port", {"rootSysPassword": "pw", "address": "127.0.0.1"}, "port"),
    ("port zero", {**GOOD, "port": 0}, "port"),
    ("port too big", {**GOOD, "port": 65536}, "port"),
    ("port negative", {**GOOD, "port": -1}, "port"),
    ("port text", {**GOOD, "port": "abc"}, "port"),
    ("port float", {**GOOD, "port": 2881.5}, "port"),
    ("address with space", {**GOOD, "address": "bad host"}, "address"),
    ("address empty", {**GOOD, "address": ""}, "address"),
    ("address bad IPv4", {**GOOD, "address": "1.2.3.999"}, "address"),
    ("address number", {**GOOD, "address": 127}, "address"),
    ("password empty", {**GOOD, "rootSysPassword": ""}, "rootSysPassword"),
    ("password number", {**GOOD, "rootSysPassword": 123}, "rootSysPassword"),
    ("password and credential", {**GOOD, "rootSysCredentialId": 1}, "rootSysCredentialId"),
    ("credential id zero", {"rootSysCredentialId": 0, "address": "127.0.0.1", "port": 1}, "rootSysCredentialId"),
    ("connection mode unknown", {**GOOD, "connectionMode": "tcp"}, "connectionMode"),
    ("proxy without cluster name", {**GOOD, "connectionMode": "proxy"}, "clusterName"),
    ("cluster id zero", {**GOOD, "obClusterId": 0}, "obClusterId"),
    ("cluster id text", {**GOOD, "obClusterId": "x"}, "obClusterId"),
    ("saveToCredential text", {**GOOD, "saveToCredential": "maybe"}, "saveToCredential"),
    ("switchConfigUrl number", {**GOOD, "switchConfigUrl": 3}, "switchConfigUrl"),
    ("hostInfo text", {**GOOD, "hostInfo": "host"}, "hostInfo"),
    ("hostInfo without type", {**GOOD, "hostInfo": {"credentialId": 1}}, "hostInfo.hostTypeId"),
    ("hostInfo without credential", {**GOOD, "hostInfo": {"hostTypeId": 1}}, "hostInfo.credentialId"),
    ("host kind unknown", {**GOOD, "hostInfo": {**HOST_INFO, "kind": "VM"}}, "hostInfo.kind"),
    (
        "container without ports",
        {**GOOD, "hostInfo": {**HOST_INFO, "kind": "DEDICATED_CONTAINER"}},
        "hostInfo.publishPorts",
    ),
    ("publish ports garbage", {**GOOD, "hostInfo": {**HOST_INFO, "publishPorts": "abc"}}, "hostInfo.publishPorts"),
    ("ssh port zero", {**GOOD, "hostInfo": {**HOST_INFO, "sshPort": 0}}, "hostInfo.sshPort"),
    ("unknown field", {**GOOD, "rootPassword": "x"}, "rootPassword"),
    ("proxyro password empty", {**GOOD, "proxyroPassword": ""}, "proxyroPassword"),
    ("body is a list", [GOOD], "body"),
    ("body is a string", "takeover", "body"),
]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    with simulation(tmp_path_factory.mktemp("corpus"), zones=1, servers_per_zone=2) as running:
        yield running


@pytest.fixture
def runtime(tmp_path: Path, sim: Simulation) -> Runtime:
    return registered_runtime(tmp_path, sim)


def assert_nothing_left(runtime: Runtime, sim: Simulation) -> None:
    for table in ("cluster_locks", "clusters", "zones", "servers", "tenants"):
        assert runtime.db.query(f"SELECT * FROM {table}") == [], f"{table} not empty"
    assert runtime.db.query("SELECT * FROM hosts") == []
    assert set(sim.state()["users"]) <= {"root", "proxyro"}


@pytest.mark.parametrize(("case", "body", "field"), BODIES, ids=[c[0] for c in BODIES])
async def test_malformed_body(
    client: Client, task_queue: str, runtime: Runtime, sim: Simulation, case: str, body: Any, field: str
) -> None:
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await client.start_workflow(
            "TakeOverCluster", body, id=f"bad-{uuid.uuid4().hex[:8]}", task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidRequest" and cause.non_retryable
    assert f"{field}: " in cause.message, cause.message
    assert_nothing_left(runtime, sim)


@pytest.mark.parametrize(
    ("case", "changes", "error_type", "words"),
    [
        ("wrong password", {"rootSysPassword": "wrong"}, "BadCredentials", "check rootSysPassword"),
        ("nothing listening", {"address": "127.0.0.1", "port": free_port()}, "ClusterUnreachable", "cannot reach"),
        (
            "missing credential reference",
            {"rootSysPassword": None, "rootSysCredentialId": 99},
            "CredentialNotFound",
            "99",
        ),
        (
            "proxy login for another cluster",
            {"connectionMode": "proxy", "clusterName": "nope"},
            "BadCredentials",
            "clusterName",
        ),
    ],
)
async def test_cluster_that_cannot_be_read(
    client: Client,
    task_queue: str,
    runtime: Runtime,
    sim: Simulation,
    case: str,
    changes: dict[str, Any],
    error_type: str,
    words: str,
) -> None:
    body = {k: v for k, v in sim_body(sim, **changes).items() if v is not None}
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await start(client, task_queue, body)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == error_type and words in cause.message, cause.message
    assert_nothing_left(runtime, sim)


async def test_not_oceanbase_and_old_versions(
    client: Client, task_queue: str, runtime: Runtime, sim: Simulation, mariadb: tuple[str, int], tmp_path: Path
) -> None:
    host, port = mariadb
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        for body, error_type, words in [
            ({"rootSysPassword": "maria-pw", "address": host, "port": port}, "NotOceanBase", "not OceanBase"),
        ]:
            import pymysql

            connection = pymysql.connect(host=host, port=port, user="root", password="")
            with connection.cursor() as cursor:
                for where in ("%", "localhost", "127.0.0.1"):
                    cursor.execute(f"CREATE USER IF NOT EXISTS 'root@sys'@'{where}' IDENTIFIED BY 'maria-pw'")
            connection.close()
            handle = await start(client, task_queue, body)
            with pytest.raises(WorkflowFailureError) as info:
                await handle.result()
            cause = info.value.cause
            assert isinstance(cause, ApplicationError) and cause.type == error_type and words in cause.message
        with simulation(tmp_path, zones=1, servers_per_zone=1, hosts=False, extra=["--version", "3.2.4"]) as old:
            handle = await start(
                client, task_queue, {"rootSysPassword": old.root_password, "address": old.address, "port": old.sql_port}
            )
            with pytest.raises(WorkflowFailureError) as info:
                await handle.result()
        cause = info.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "UnsupportedVersion"
        assert "OceanBase 3.2.4 found" in cause.message
    assert_nothing_left(runtime, sim)


async def failed_then_rolled_back(
    client: Client, task_queue: str, runtime: Runtime, body: dict[str, Any], words: str
) -> None:
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await start(client, task_queue, body)
        task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=60)
        assert task.status.value == "FAILED"
        (failed,) = [s for s in task.subtasks if s.status.value == "FAILED"]
        log = await log_of(handle, failed.id)
        assert words in log, log
        await update(handle, "rollback")
        assert (await handle.result()).operation.value == "ROLLBACK"


async def test_inactive_server(client: Client, task_queue: str, runtime: Runtime, sim: Simulation) -> None:
    server = sim.ready["servers"][1]
    target = f"/servers/{server['address']}:{server['rpc_port']}"
    sim.call("PATCH", target, {"status": "INACTIVE"})
    try:
        await failed_then_rolled_back(client, task_queue, runtime, sim_body(sim), "server active on")
    finally:
        sim.call("PATCH", target, {"status": "ACTIVE"})
    assert_nothing_left(runtime, sim)


async def test_unknown_host_without_host_info(
    client: Client, task_queue: str, runtime: Runtime, sim: Simulation
) -> None:
    body = {k: v for k, v in sim_body(sim).items() if k != "hostInfo"}
    await failed_then_rolled_back(client, task_queue, runtime, body, "host known or in hostInfo")
    assert_nothing_left(runtime, sim)


async def test_wrong_ssh_key_and_missing_host_type(
    client: Client, task_queue: str, runtime: Runtime, sim: Simulation
) -> None:
    wrong = credentials.save_credential(
        runtime.db, runtime.vault, kind=credentials.HOST, name="pw", username="admin", secret="no"
    )
    body = sim_body(sim, hostInfo={"hostTypeId": 1, "credentialId": wrong, "sshPort": sim.ssh_port})
    await failed_then_rolled_back(client, task_queue, runtime, body, "SSH login as admin refused")
    body = sim_body(sim, hostInfo={"hostTypeId": 77, "credentialId": 1, "sshPort": sim.ssh_port})
    await failed_then_rolled_back(client, task_queue, runtime, body, "host type 77 does not exist")
    assert_nothing_left(runtime, sim)


@pytest.mark.parametrize(
    "password",
    ["it's", "back\\slash", "100%_done", "пароль-密码", "x'; DROP USER root; --", '"quoted"'],
    ids=["quote", "backslash", "percent", "unicode", "sql-fragment", "double-quote"],
)
async def test_hostile_root_passwords_work(
    client: Client, task_queue: str, runtime: Runtime, tmp_path: Path, password: str
) -> None:
    with simulation(tmp_path, zones=1, servers_per_zone=1, root_password=password) as own:
        runtime.known_hosts = own.ready["ssh"]["known_hosts"]
        credentials.save_credential(
            runtime.db, runtime.vault, kind=credentials.HOST, name="key", username="admin",
            secret=Path(own.ready["ssh"]["private_key_file"]).read_text(), secret_type="private_key",
        )  # fmt: skip
        async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
            handle = await start(client, task_queue, sim_body(own, proxyroPassword=password))
            task = await handle.result()
        assert task.status.value == "SUCCESSFUL"
        assert set(own.state()["users"]) == {"root", "ocp_monitor", "proxyro"}
