"""Attacks on the password box and on the statements the takeover sends, each refused.

- A stored cluster credential is used only at the endpoints it is bound to and for its cluster: a takeover
  or precheck naming another address never connects there.
- A server that asks for the password in clear text (mysql_clear_password, dialog) gets nothing without TLS.
- A host credential names the hosts it is for when host keys are trusted on first use.
- A session in NO_BACKSLASH_ESCAPES cannot turn a quoted password into SQL (on MariaDB, both modes).
- A rollback of a second takeover of a managed cluster leaves the first takeover's rows, credentials and users.
"""

from __future__ import annotations

import socket
import stat
import struct
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymysql
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities import cluster_records
from activities import cluster_sql as sql
from activities.credentials import check_host
from activities.ob_sys_client import ClusterTls, ObSysClient
from activities.precheck import CheckItems, check_config_url, run_checks
from activities.registry import build_activities
from activities.runtime import Runtime, Work
from contracts.engine import MEMO_CLUSTER_ID, MEMO_TASK_ID, config_url_for
from contracts.errors import (
    BadCredentials,
    ClusterAlreadyManaged,
    CredentialMisuse,
    FailedPrecondition,
    MetadbUnavailable,
    TlsRefused,
)
from contracts.messages import PrecheckInput, SubtaskInput
from contracts.request import parse_request
from contracts.target import ClusterTarget, TakeoverOptions
from contracts.topology import ClusterEndpoint, ServerNode, Topology, ZoneNode
from metadb import clusters, credentials, hosts, tasks
from metadb.db import Database
from metadb.migrate import migrate
from ob_takeover.demo import write_private
from tests.support.driver import log_of, start, update, wait_for
from tests.support.simulator import Simulation, register_ssh_key, registered_runtime, sim_body, sim_runtime, simulation
from tests.support.tls import TlsFiles, make_tls_files
from worker import build_worker
from workflows.takeover import TakeOverCluster


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    with simulation(tmp_path_factory.mktemp("security"), zones=1, servers_per_zone=2) as running:
        yield running


@pytest.fixture
def runtime(tmp_path: Path, sim: Simulation) -> Runtime:
    return registered_runtime(tmp_path, sim)


class Listener:
    """A TCP port that counts the connections it gets (an attacker's server that nobody should reach)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


# --- a stored credential goes only where it is bound -------------------------------------------------


def save_root(runtime: Runtime, sim: Simulation, **binding: Any) -> int:
    return credentials.save_credential(
        runtime.db, runtime.vault, kind=credentials.CLUSTER, name=f"root-{uuid.uuid4().hex[:4]}",
        username="root@sys", secret=sim.root_password, **binding,
    )  # fmt: skip


async def failure_of(client: Client, task_queue: str, runtime: Runtime, body: dict[str, Any]) -> ApplicationError:
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await start(client, task_queue, body)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def test_a_stored_root_credential_is_not_sent_to_another_address(
    client: Client, task_queue: str, runtime: Runtime, sim: Simulation
) -> None:
    credential = save_root(runtime, sim, endpoints=[f"{sim.address}:{sim.sql_port}"])
    attacker = Listener()
    body = sim_body(sim, rootSysPassword=None, rootSysCredentialId=credential, address="127.0.0.1", port=attacker.port)
    cause = await failure_of(client, task_queue, runtime, body)
    assert cause.type == "CredentialMisuse" and cause.non_retryable, cause
    assert f"logs in only at {sim.address}:{sim.sql_port}, not at 127.0.0.1:{attacker.port}" in cause.message
    assert attacker.connections == 0
    # The precheck refuses it the same way, with the item named.
    report = await run_checks(runtime, PrecheckInput.of_request(parse_request(body), workflow_id="w", task_id=1))
    (item,) = [i for i in report.items if i.name == "credential bound to this cluster"]
    assert item.status == "FAILED" and "not at 127.0.0.1" in item.message
    assert attacker.connections == 0


async def test_a_credential_without_endpoints_is_used_nowhere(
    client: Client, task_queue: str, runtime: Runtime, sim: Simulation
) -> None:
    credential = save_root(runtime, sim)
    body = sim_body(sim, rootSysPassword=None, rootSysCredentialId=credential)
    cause = await failure_of(client, task_queue, runtime, body)
    assert cause.type == "CredentialMisuse"
    assert f"ob-takeover credential bind {credential} --endpoint" in cause.message


def test_a_credential_bound_to_one_cluster_is_refused_for_another(runtime: Runtime, sim: Simulation) -> None:
    where = f"{sim.address}:{sim.sql_port}"
    credential = save_root(runtime, sim, endpoints=[where])
    endpoint = ClusterEndpoint(address=sim.address, port=sim.sql_port, credential_id=credential)
    # The first use binds it to the cluster that answered; the same endpoint serving another cluster later
    # (an address reused, a DNS name moved) is refused.
    assert runtime.credentials.endpoint(endpoint, "obcluster:1").root_sys_password == sim.root_password
    assert credentials.get_credential(runtime.db, runtime.vault, credential).bound_cluster == "obcluster:1"
    with pytest.raises(CredentialMisuse, match=r"belongs to cluster obcluster:1, but the cluster at .* is other:7"):
        runtime.credentials.endpoint(endpoint, "other:7")
    # A cluster credential stored before bindings existed is usable at its managed cluster's address only.
    cluster_id = clusters.create_cluster_record(
        runtime.db, name="legacy", ob_cluster_id=3, address="127.0.0.9", port=2881, connection_mode="direct",
        version="4.2", task_id=1,
    )  # fmt: skip
    legacy = save_root(runtime, sim, cluster_id=cluster_id)
    runtime.credentials.endpoint(ClusterEndpoint(address="127.0.0.9", port=2881, credential_id=legacy))
    with pytest.raises(CredentialMisuse, match=r"logs in only at 127.0.0.9:2881"):
        runtime.credentials.endpoint(ClusterEndpoint(address=sim.address, port=sim.sql_port, credential_id=legacy))


def test_through_a_proxy_the_cluster_name_is_checked_before_connecting(runtime: Runtime, sim: Simulation) -> None:
    credential = save_root(runtime, sim, endpoints=["127.0.0.9:2883"], bound_cluster="obcluster:1")
    proxy = {"address": "127.0.0.9", "port": 2883, "connection_mode": "proxy", "credential_id": credential}
    runtime.credentials.endpoint(ClusterEndpoint(**proxy, cluster_name="obcluster", ob_cluster_id=1))
    for other in ({"cluster_name": "other"}, {"cluster_name": "obcluster", "ob_cluster_id": 2}):
        with pytest.raises(CredentialMisuse, match="belongs to cluster obcluster:1"):
            runtime.credentials.endpoint(ClusterEndpoint(**proxy, **other))


def test_host_addresses_that_are_not_plain_ips_get_no_login(runtime: Runtime) -> None:
    scoped = credentials.save_credential(
        runtime.db, runtime.vault, kind=credentials.HOST, name="scoped", username="admin", secret="pw",
        hosts=["10.0.0.0/24"], secret_type="private_key",
    )  # fmt: skip
    credential = credentials.get_credential(runtime.db, runtime.vault, scoped)
    check_host(credential, "::ffff:10.0.0.7", trust_on_first_use=False, key_known=True)  # 10.0.0.7
    for address in ("db-host-7", "fe80::1%eth9"):
        with pytest.raises(CredentialMisuse, match="no login"):
            check_host(credential, address, trust_on_first_use=False, key_known=True)


def test_host_credentials_name_their_hosts_under_trust_on_first_use(runtime: Runtime) -> None:
    scoped = credentials.save_credential(
        runtime.db, runtime.vault, kind=credentials.HOST, name="scoped", username="admin", secret="pw",
        hosts=["127.1.2.0/24"],
    )  # fmt: skip
    unscoped = credentials.save_credential(
        runtime.db, runtime.vault, kind=credentials.HOST, name="any", username="admin", secret="pw"
    )
    scoped_credential = credentials.get_credential(runtime.db, runtime.vault, scoped)
    unscoped_credential = credentials.get_credential(runtime.db, runtime.vault, unscoped)
    check_host(scoped_credential, "127.1.2.9", trust_on_first_use=False, key_known=False)
    with pytest.raises(CredentialMisuse, match=r"logs in only to 127.1.2.0/24, not to 127.1.3.1"):
        check_host(scoped_credential, "127.1.3.1", trust_on_first_use=False, key_known=True)
    # Unscoped: fine when the key is checked against known_hosts or a recorded key, refused otherwise.
    check_host(unscoped_credential, "127.1.3.1", trust_on_first_use=False, key_known=False)
    check_host(unscoped_credential, "127.1.3.1", trust_on_first_use=True, key_known=True)
    runtime.trust_on_first_use = True
    with pytest.raises(CredentialMisuse, match="names no hosts"):
        runtime.host("127.1.3.1", ssh_port=22, credential_id=unscoped)
    # A password goes to an unknown key only at a host named one by one, never to a whole network.
    with pytest.raises(CredentialMisuse, match="named one by one"):
        check_host(scoped_credential, "127.1.2.9", trust_on_first_use=True, key_known=False)
    credentials.set_scope(runtime.db, scoped, hosts=["127.1.2.0/24", "127.1.2.9/32"])
    check_host(
        credentials.get_credential(runtime.db, runtime.vault, scoped), "127.1.2.9", trust_on_first_use=True,
        key_known=False,
    )  # fmt: skip


# --- plaintext authentication -------------------------------------------------------------------


def _packet(sequence: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([sequence]) + payload


class ClearTextAsker:
    """A fake MySQL server that switches the client to mysql_clear_password and keeps what it receives."""

    def __init__(self, plugin: bytes = b"mysql_clear_password") -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.plugin = plugin
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.settimeout(5)
        capabilities = 0x00000001 | 0x00000200 | 0x00008000 | 0x00080000
        greeting = (
            b"\x0a5.7.25-OceanBase-v4.2.1\x00" + struct.pack("<I", 7) + b"12345678\x00"
            + struct.pack("<H", capabilities & 0xFFFF) + b"\x21" + struct.pack("<H", 2)
            + struct.pack("<H", capabilities >> 16) + bytes([21]) + b"\x00" * 10 + b"123456789012\x00"
            + b"mysql_native_password\x00"
        )  # fmt: skip
        try:
            conn.sendall(_packet(0, greeting))
            self.received += conn.recv(65536)
            data = {b"dialog": b"\x03Password: ", b"caching_sha2_password": b"A" * 20 + b"\x00"}.get(self.plugin, b"")
            conn.sendall(_packet(2, b"\xfe" + self.plugin + b"\x00" + data))
            self.received += conn.recv(65536)
            if self.plugin == b"caching_sha2_password":
                # The scramble was not enough: full authentication, which wants the password itself.
                conn.sendall(_packet(4, b"\x01\x04"))
                self.received += conn.recv(65536)
        except OSError:
            pass
        finally:
            conn.close()


@pytest.mark.unit
@pytest.mark.parametrize("plugin", [b"mysql_clear_password", b"dialog", b"caching_sha2_password", b"sha256_password"])
def test_a_server_asking_for_the_password_gets_nothing(plugin: bytes) -> None:
    """Plugins that send the password (in clear, or RSA-encrypted to a key the server hands out) are refused
    without verified TLS; a caching_sha2 server gets the scramble, never the password or a key request."""
    password = "Only-For-The-Real-Cluster-1"
    if plugin in (b"mysql_clear_password", b"dialog"):
        # Without the refusal, the driver hands the password over (what the attacker counts on).
        asker = ClearTextAsker(plugin)
        with pytest.raises(pymysql.err.MySQLError):
            pymysql.connect(host="127.0.0.1", port=asker.port, user="root@sys", password=password, connect_timeout=3)
        asker.thread.join(5)
        assert password.encode() in asker.received
    asker = ClearTextAsker(plugin)
    client = ObSysClient(ClusterEndpoint(address="127.0.0.1", port=asker.port, root_sys_password=password))
    with pytest.raises(BadCredentials, match=r"without verified TLS: refused; the password was not sent"):
        client.query("SELECT 1")
    client.close()
    asker.thread.join(5)
    assert password.encode() not in asker.received
    assert not asker.received.endswith(_packet(5, b"\x02"))  # no request for the server's public key


# --- quoting in both sql_modes -----------------------------------------------------------------


@contextmanager
def mariadb_login(mariadb: tuple[str, int]) -> Iterator[tuple[pymysql.connections.Connection[Any], str]]:
    """An admin connection to the session's MariaDB and a login of this test's own, `<login>@sys` with
    password `rootpw` (the form ObSysClient logs in with), removed afterwards."""
    host, port = mariadb
    admin = pymysql.connect(host=host, port=port, user="root", password="", autocommit=True)
    login = f"a{uuid.uuid4().hex[:6]}"
    places = ("127.0.0.1", "localhost", "%")
    with admin.cursor() as cursor:
        for where in places:
            cursor.execute(f"CREATE USER '{login}@sys'@'{where}' IDENTIFIED BY 'rootpw'")
            cursor.execute(f"GRANT ALL ON *.* TO '{login}@sys'@'{where}' WITH GRANT OPTION")
    try:
        yield admin, login
    finally:
        with admin.cursor() as cursor:
            for where in places:
                cursor.execute(f"DROP USER IF EXISTS '{login}@sys'@'{where}'")
        admin.close()


@pytest.mark.parametrize("mode", ["default", "NO_BACKSLASH_ESCAPES"])
def test_a_hostile_password_stays_a_password_in_every_sql_mode(mariadb: tuple[str, int], mode: str) -> None:
    host, port = mariadb
    user = f"p{uuid.uuid4().hex[:6]}"
    hostile = "x' , intruder -- "
    with mariadb_login(mariadb) as (admin, login):
        with admin.cursor() as cursor:
            cursor.execute("SELECT @@GLOBAL.sql_mode")
            (saved,) = cursor.fetchone()
            if mode != "default":
                cursor.execute("SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',NO_BACKSLASH_ESCAPES')")
        try:
            endpoint = ClusterEndpoint(address=host, port=port, root_sys_password="rootpw")
            with ObSysClient(endpoint, user=login) as client:
                client.execute(sql.create_user(user, hostile))
                client.execute(sql.alter_user_password(user, hostile))
            with admin.cursor() as cursor:
                # The admin session predates the mode change: its parameters are quoted for the default mode.
                cursor.execute(
                    "SELECT user, authentication_string = PASSWORD(%s) FROM mysql.user WHERE user IN ('intruder', %s)",
                    (hostile, user),
                )
                assert [tuple(row) for row in cursor.fetchall()] == [(user, 1)]
        finally:
            with admin.cursor() as cursor:
                cursor.execute("SET GLOBAL sql_mode = %s", (saved,))
                cursor.execute(f"DROP USER IF EXISTS '{user}', 'intruder'")


# --- TLS --------------------------------------------------------------------------------------------


def test_cluster_connections_use_tls_and_check_the_certificate(
    mariadb: tuple[str, int], mariadb_tls: TlsFiles, tmp_path: Path
) -> None:
    host, port = mariadb
    endpoint = ClusterEndpoint(address=host, port=port, root_sys_password="rootpw")
    with mariadb_login(mariadb) as (_, login):

        def cipher(tls: ClusterTls) -> str:
            with ObSysClient(endpoint, user=login, tls=tls) as client:
                return str(client.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")[0]["VALUE"])

        assert cipher(ClusterTls("verify_identity", str(mariadb_tls.ca)))
        assert cipher(ClusterTls("preferred"))  # offered, so taken
        assert cipher(ClusterTls("off")) == ""
        stranger = make_tls_files(tmp_path, "stranger")
        with pytest.raises(TlsRefused, match="certificate is not accepted"):
            cipher(ClusterTls("verify_ca", str(stranger.ca)))


def test_tls_required_refuses_a_cluster_without_it(sim: Simulation) -> None:
    endpoint = ClusterEndpoint(address=sim.address, port=sim.sql_port, root_sys_password=sim.root_password)
    with pytest.raises(TlsRefused, match="does not offer TLS and cluster_tls is required"):
        ObSysClient(endpoint, tls=ClusterTls("required")).query("SELECT 1")
    assert ObSysClient(endpoint, tls=ClusterTls("preferred")).query("SELECT 1 AS ONE") == [{"ONE": 1}]


def test_a_mysql_metadb_over_tls(mariadb: tuple[str, int], mariadb_tls: TlsFiles, tmp_path: Path) -> None:
    host, port = mariadb
    base = f"mysql://root:@{host}:{port}/mysql"

    def cipher(url: str) -> str:
        db = Database(url)
        try:
            return str(db.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")[0]["Value"])
        finally:
            db.close()

    assert cipher(f"{base}?tls=verify_identity&tls_ca={mariadb_tls.ca}")
    assert cipher(f"{base}?tls=off") == ""
    stranger = make_tls_files(tmp_path, "stranger")
    with pytest.raises(MetadbUnavailable):
        cipher(f"{base}?tls=verify_ca&tls_ca={stranger.ca}")
    with pytest.raises(ValueError, match="unknown parameter sslmode"):
        Database(f"{base}?sslmode=require")


# --- a rollback deletes only its own ---------------------------------------------------------------


async def test_rolling_back_a_second_takeover_leaves_the_first_ones_rows_and_credentials(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    with simulation(tmp_path / "sim", zones=1, servers_per_zone=1) as own:
        runtime = sim_runtime(tmp_path, own)
        hosts.add_host_type(runtime.db, "t")
        register_ssh_key(runtime, own)
        async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
            first = await start(client, task_queue, sim_body(own))
            assert (await first.result()).status.value == "SUCCESSFUL"
            tables = ("clusters", "zones", "servers", "hosts", "credentials", "tenants")
            before = {table: runtime.db.query(f"SELECT * FROM {table} ORDER BY 1") for table in tables}
            users_before = own.state()["users"]
            assert {row["name"] for row in before["credentials"]} >= {"obcluster:1:root@sys", "obcluster:1:ocp_monitor"}

            second = await start(client, task_queue, sim_body(own))
            task = await wait_for(second, lambda t: t.status.value != "RUNNING", timeout=60)
            assert task.status.value == "FAILED"
            await update(second, "rollback")
            rolled_back = await second.result()
            assert (rolled_back.operation.value, rolled_back.status.value) == ("ROLLBACK", "SUCCESSFUL")
        after = {table: runtime.db.query(f"SELECT * FROM {table} ORDER BY 1") for table in tables}
        assert after == before
        assert own.state()["users"] == users_before


# --- hosts of another cluster, config URLs ----------------------------------------------------------


async def test_a_host_of_another_cluster_is_not_worked_on_even_when_operators_skip(
    client: Client, task_queue: str, runtime: Runtime, sim: Simulation
) -> None:
    # Another managed cluster holds the first host, with its own (working) SSH credential.
    held = sim.address
    hosts.register_host(
        runtime.db, ip=held, ssh_port=sim.ssh_port, kind="DEDICATED_PHYSICAL_MACHINE", publish_ports=None,
        host_type_id=1, credential_id=1, task_id=999,
    )  # fmt: skip
    runtime.db.execute("UPDATE hosts SET reserved_by_cluster_id = 4242 WHERE ip = ?", (held,))
    agent_conf = sim.host_root(held) / "home/admin/ocp_agent/conf"
    before = sorted(p.name for p in agent_conf.iterdir()) if agent_conf.exists() else []
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await start(client, task_queue, sim_body(sim))
        task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=60)
        (prepare,) = [s for s in task.subtasks if s.status.value == "FAILED"]
        assert prepare.name == "Prepare take over cluster"
        assert "host not held by another cluster" in await log_of(handle, prepare.id)
        # An operator skips every failure: no subtask works on the held host.
        refusal = ""
        for _ in range(10):
            failures = [s for s in task.subtasks if s.status.value == "FAILED"]
            for failed in failures:
                log = await log_of(handle, failed.id)
                if failed.id != prepare.id and f"{held}: host is reserved by managed cluster 4242" in log:
                    refusal = failed.name
            if refusal or not failures:
                break
            for failed in failures:
                await update(handle, "skip_subtask", failed.id)
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=60)
        assert refusal == "Update server process info", refusal
    row = hosts.find_host(runtime.db, held)
    assert row is not None and row["reserved_by_cluster_id"] == 4242 and row["registered_by_task_id"] == 999
    assert (sorted(p.name for p in agent_conf.iterdir()) if agent_conf.exists() else []) == before


def test_reserving_a_host_is_a_conditional_write(runtime: Runtime) -> None:
    hosts.register_host(
        runtime.db, ip="127.9.9.9", ssh_port=22, kind="DEDICATED_PHYSICAL_MACHINE", publish_ports=None,
        host_type_id=1, credential_id=1, task_id=1,
    )  # fmt: skip
    hosts.reserve_host(runtime.db, "127.9.9.9", 1, {})
    hosts.reserve_host(runtime.db, "127.9.9.9", 1, {"again": True})  # the same cluster again: fine
    with pytest.raises(FailedPrecondition, match="reserved by managed cluster 1"):
        hosts.reserve_host(runtime.db, "127.9.9.9", 2, {})
    assert hosts.find_host(runtime.db, "127.9.9.9")["reserved_by_cluster_id"] == 1  # type: ignore[index]


def _config_url_item(public_url: str, ips: list[str], current: str) -> Any:
    topology = Topology(
        cluster_name="c1", ob_cluster_id=7, version="4.2.1.8", zones=[ZoneNode(name="z1")],
        servers=[ServerNode(ip=ip, rpc_port=2882, sql_port=2881, zone="z1") for ip in ips],
    )  # fmt: skip
    out = CheckItems()
    check_config_url(out, public_url, TakeoverOptions(), topology, current)
    (item,) = out.items
    return item


@pytest.mark.unit
def test_a_loopback_config_url_is_refused_for_servers_off_loopback() -> None:
    item = _config_url_item("http://127.0.0.1:8080", ["10.0.0.1", "10.0.0.2"], "")
    assert item.status == "FAILED" and "10.0.0.1, 10.0.0.2 cannot reach" in item.message
    assert _config_url_item("http://127.0.0.1:8080", ["127.0.0.5"], "").status == "PASSED"
    assert _config_url_item("http://ocp.example:8080", ["10.0.0.1"], "").status == "PASSED"


@pytest.mark.unit
def test_the_config_url_check_compares_whole_urls() -> None:
    ours = config_url_for("http://127.0.0.1:8080", "c1", 7)
    assert _config_url_item("http://127.0.0.1:8080", ["127.0.0.5"], ours).status == "PASSED"
    # Another server whose URL only starts like ours is another config server.
    for other in ("http://127.0.0.1:80801/services", "http://127.0.0.1:8080.evil/x", ours.replace("=7", "=77")):
        assert _config_url_item("http://127.0.0.1:8080", ["127.0.0.5"], other).status != "PASSED", other


# --- files and messages -------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    "url",
    ["mysql://ob:Zq9/Xk7@db:3306/meta", "mysql://ob:Zq9#Xk7@db/meta", "mysql://ob:Zq9?Xk7@db/meta"],
)  # fmt: skip
def test_a_malformed_metadb_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(ValueError) as info:
        Database(url)
    message = str(info.value)
    assert "Zq9" not in message and "Xk7" not in message, message
    assert "percent-encode" in message


@pytest.mark.unit
def test_the_sqlite_metadb_and_the_demo_files_are_private(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'var' / 'metadb.sqlite'}")
    migrate(db)
    db.close()
    assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700
    for path in (tmp_path / "var").iterdir():  # the database and its -wal and -shm files
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # An existing world-readable file is narrowed.
    loose = tmp_path / "loose.sqlite"
    loose.touch(mode=0o644)
    loose.chmod(0o644)
    Database(f"sqlite:///{loose}")
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    write_private(tmp_path / "api-password", "pw\n")
    assert stat.S_IMODE((tmp_path / "api-password").stat().st_mode) == 0o600


# --- ids from the memo, names from the cluster -----------------------------------------------------------


async def test_a_task_id_of_another_workflow_is_refused(
    client: Client, task_queue: str, runtime: Runtime, sim: Simulation
) -> None:
    """The memo's taskId is set by whoever starts the workflow: a task id of another takeover, whose rows the
    "own rows only" rules would then let this one delete, is refused before any subtask works."""
    tasks.record_task(
        runtime.db, task_id=4242, workflow_id="takeover-10.0.0.5-2881", run_id="r1", name="t", status="SUCCESSFUL"
    )
    async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
        handle = await client.start_workflow(
            TakeOverCluster.run, sim_body(sim), id=f"takeover-test-{uuid.uuid4().hex[:6]}", task_queue=task_queue,
            memo={MEMO_TASK_ID: 4242, MEMO_CLUSTER_ID: 77},
        )  # fmt: skip
        task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=60)
        (failed,) = [s for s in task.subtasks if s.status.value == "FAILED"]
        assert failed.name == "Mc lock ob clusters"
        assert "task id 4242 belongs to workflow takeover-10.0.0.5-2881" in await log_of(handle, failed.id)
        await handle.terminate()
    assert tasks.get_task(runtime.db, 4242)["workflow_id"] == "takeover-10.0.0.5-2881"  # type: ignore[index]


def test_a_cluster_id_of_another_cluster_is_refused(runtime: Runtime) -> None:
    victim = clusters.create_cluster_record(
        runtime.db, name="victim", ob_cluster_id=9, address="10.0.0.9", port=2881, connection_mode="direct",
        version="4.2", task_id=1,
    )  # fmt: skip
    with pytest.raises(ClusterAlreadyManaged, match=f"cluster id {victim} is cluster victim"):
        clusters.create_cluster_record(
            runtime.db, name="fake", ob_cluster_id=1, address="127.0.0.66", port=2881, connection_mode="direct",
            version="4.2", task_id=2, cluster_id=victim,
        )  # fmt: skip
    row = clusters.get_cluster(runtime.db, victim)
    assert row is not None and (row["name"], row["address"]) == ("victim", "10.0.0.9")


def test_a_credential_name_held_for_another_endpoint_is_not_replaced(runtime: Runtime, sim: Simulation) -> None:
    """A server that reports another cluster's name and id cannot overwrite that cluster's stored passwords."""
    held = credentials.save_credential(
        runtime.db, runtime.vault, kind=credentials.CLUSTER, name="obcluster:1:proxyro", username="proxyro",
        secret="the real one", endpoints=["10.0.0.9:2881"], created_by_task_id=1,
    )  # fmt: skip
    arg = SubtaskInput(
        task_id=2, subtask_id=200015, subtask_name="Set proxyro password to sys tenant", workflow_id="w",
        operation="EXECUTE", target=ClusterTarget.of_request(parse_request(sim_body(sim))).of_cluster("obcluster", 1),
    )  # fmt: skip
    with pytest.raises(CredentialMisuse, match="holds obcluster:1:proxyro for another endpoint"):
        cluster_records.save_cluster_credential(
            Work(arg=arg, runtime=runtime), "obcluster:1:proxyro", "proxyro", "x", None
        )
    assert credentials.get_credential(runtime.db, runtime.vault, held).secret == "the real one"
