"""The statements that carry user names and passwords, against a real OceanBase parser (seekdb): the
monitor and proxyro users are created, granted, re-passworded and dropped with hostile passwords, and
log in with them; a rejected statement never echoes its password. The product's own steps read and
restore exactly the account they mean, next to accounts that differ from it only in letter case or host."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from activities import cluster_sql as sql
from activities import cluster_users
from activities.ob_sys_client import ClusterTls, ObSysClient
from activities.runtime import Runtime, Work
from contracts.errors import BadCredentials, ClusterSqlError, TlsRefused
from contracts.messages import SubtaskInput
from contracts.target import ClusterTarget
from contracts.topology import ClusterEndpoint
from metadb import credentials
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import MasterKey, Vault

PASSWORDS = [
    "plain-Passw0rd",
    'it\'s "quoted"',
    "back\\slash\\",
    "100%_like_",
    "ünïcødé-密码-🙂",
    "x'; DROP USER root; --",
    "*/ OR 1=1 /*",
    "`backtick` \\' mixed",
]


@pytest.fixture
def root(seekdb: tuple[str, int]) -> ClusterEndpoint:
    host, port = seekdb
    return ClusterEndpoint(address=host, port=port, root_sys_password="")


def login(endpoint: ClusterEndpoint, user: str, password: str) -> bool:
    try:
        with ObSysClient(endpoint.model_copy(update={"root_sys_password": password}), user=user) as client:
            return str(client.query("SELECT CURRENT_USER() AS ME")[0]["ME"]).startswith(user)
    except BadCredentials:
        return False


@pytest.mark.parametrize("password", PASSWORDS)
def test_quoted_values_come_back_unchanged(root: ClusterEndpoint, password: str) -> None:
    with ObSysClient(root) as client:
        assert client.query(f"SELECT {sql.quote(password)} AS V")[0]["V"] == password


@pytest.mark.parametrize("user", [sql.MONITOR_USER, sql.PROXYRO_USER])
def test_users_created_granted_repassworded_and_dropped(root: ClusterEndpoint, user: str) -> None:
    first, second = PASSWORDS[1], PASSWORDS[4]
    target = "*.*" if user == sql.MONITOR_USER else "oceanbase.*"
    with ObSysClient(root) as client:
        client.execute(sql.create_user(user, first))
        client.execute(sql.create_user(user, first))  # IF NOT EXISTS: a second run changes nothing
        client.execute(sql.grant("SELECT", target, user))
        assert [list(row.values()) for row in client.query(sql.user_exists(user))] == [[user]]
        grants = [str(next(iter(row.values()))).replace("`", "") for row in client.query(f"SHOW GRANTS FOR {user}")]
        assert f"GRANT SELECT ON {target} TO '{user}'" in grants
    assert login(root, user, first)
    for password in PASSWORDS:
        with ObSysClient(root) as client:
            client.execute(sql.alter_user_password(user, password))
        assert login(root, user, password), password
        assert not login(root, user, second if password != second else first)
    with ObSysClient(root) as client:
        client.execute(sql.drop_user(user))
        assert client.query(sql.user_exists(user)) == []
    assert not login(root, user, PASSWORDS[-1])


def test_a_rejected_statement_never_echoes_its_password(root: ClusterEndpoint) -> None:
    secret = "TopSecret'-42"
    # The parser stops before the password and quotes the rest of the statement back.
    broken = sql.create_user(sql.MONITOR_USER, secret).replace("IF NOT EXISTS", "IF NOT EXISTS GARBAGE")
    with ObSysClient(root) as client, pytest.raises(ClusterSqlError) as raised:
        client.execute(broken)
    assert "1064" in str(raised.value)
    assert "TopSecret" not in str(raised.value) and "TopSecret" not in repr(raised.value.__cause__)


def test_a_wrong_password_is_refused_as_bad_credentials(root: ClusterEndpoint) -> None:
    with ObSysClient(root) as client:
        client.execute(sql.create_user("ob_takeover_probe", "right-one"))
    assert login(root, "ob_takeover_probe", "right-one")
    wrong = root.model_copy(update={"root_sys_password": "wrong"})
    with pytest.raises(BadCredentials), ObSysClient(wrong, user="ob_takeover_probe") as client:
        client.query("SELECT 1")


def test_tls_on_a_kernel_without_it(root: ClusterEndpoint) -> None:
    """OceanBase offers TLS in its handshake even with none configured, then refuses it: `preferred` (the
    default) falls back to plaintext, `required` says what to change."""
    with ObSysClient(root, tls=ClusterTls("preferred")) as client:
        assert client.query("SELECT 1 AS ONE") == [{"ONE": 1}]
    with pytest.raises(TlsRefused, match="does not offer TLS and cluster_tls is required"):
        ObSysClient(root, tls=ClusterTls("required")).query("SELECT 1")


def test_a_user_is_restored_with_its_own_hash_and_grants(root: ClusterEndpoint) -> None:
    """The statements that undo "Create default user" on a monitor user that existed before, on a real
    kernel: the hash and the grants come back exactly, and the old password logs in again."""
    user = "ob_takeover_agent"
    with ObSysClient(root) as client:
        client.execute(sql.drop_user(user))
        client.execute(sql.create_user(user, "Agent's-Own-1"))
        client.execute(sql.grant("SELECT", "oceanbase.*", user))
        client.execute(sql.grant("PROCESS", "*.*", user))

        def snapshot() -> tuple[str, list[str]]:
            password = str(client.query(sql.user_password_hash(user))[0]["PASSWORD"])
            return password, [str(next(iter(r.values()))) for r in client.query(sql.show_grants(user))]

        before = snapshot()
        # What the takeover does to it.
        client.execute(sql.alter_user_password(user, "Platform-Generated-2"))
        client.execute(sql.grant("SELECT", "*.*", user))
        assert snapshot() != before
        # The compensation.
        client.execute(sql.drop_user(user))
        client.execute(sql.create_user_with_hash(user, before[0]))
        for statement in sql.grants_from_show(before[1], user):
            client.execute(statement)
        assert snapshot() == before
    assert login(root, user, "Agent's-Own-1") and not login(root, user, "Platform-Generated-2")
    with ObSysClient(root) as client:
        client.execute(sql.drop_user(user))


# Accounts next to the product's own that a lookup by name in utf8mb4_general_ci would also find.
VARIANTS = [("OCP_MONITOR", "%"), ("ocp_monitor", "10.0.0.%")]
Snapshot = tuple[str, list[str]] | None


def account(user: str, host: str) -> str:
    return f"{sql.quote(user)}@{sql.quote(host)}"


def snapshot(root: ClusterEndpoint, user: str, host: str = "%") -> Snapshot:
    """The account's hash and grant lines, read byte for byte; None when there is no such account."""
    with ObSysClient(root) as client:
        rows = client.query(
            "SELECT password AS PASSWORD FROM mysql.user WHERE BINARY user = %s AND BINARY host = %s", (user, host)
        )
        if not rows:
            return None
        grants = [str(next(iter(row.values()))) for row in client.query(f"SHOW GRANTS FOR {account(user, host)}")]
        return str(rows[0]["PASSWORD"]), grants


def make_account(root: ClusterEndpoint, user: str, host: str, password: str, *grants: str) -> None:
    with ObSysClient(root) as client:
        client.execute(f"DROP USER IF EXISTS {account(user, host)}")
        client.execute(f"CREATE USER {account(user, host)} IDENTIFIED BY {sql.quote(password)}")
        for grant in grants:
            client.execute(f"GRANT {grant} TO {account(user, host)}")


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    db = Database(f"sqlite:///{tmp_path / 'metadb.sqlite'}")
    migrate(db)
    return Runtime(db=db, vault=Vault(MasterKey.generate()))


@pytest.fixture
def clean(root: ClusterEndpoint) -> Iterator[None]:
    """No monitor, proxyro or look-alike account before or after."""

    def drop() -> None:
        with ObSysClient(root) as client:
            for user, host in [("ocp_monitor", "%"), ("proxyro", "%"), ("PROXYRO", "%"), *VARIANTS]:
                client.execute(f"DROP USER IF EXISTS {account(user, host)}")

    drop()
    yield
    drop()


def subtask(runtime: Runtime, root: ClusterEndpoint, name: str, operation: str = "EXECUTE") -> Work:
    """One run of a subtask of task 1 on seekdb, as its activity would start it."""
    target = ClusterTarget(endpoint=root).of_cluster("seekdb", 1)
    arg = SubtaskInput(
        task_id=1, subtask_id=100, subtask_name=name, workflow_id="w", operation=operation, target=target
    )
    return Work(arg=arg, runtime=runtime)


def run(work: Work, step: Callable[[Work], None]) -> list[str]:
    """The step's log lines."""
    try:
        step(work)
    finally:
        work.close()
    return work.log


@pytest.mark.usefixtures("clean")
@pytest.mark.parametrize(("variant", "host"), VARIANTS)
def test_the_monitor_user_is_read_and_restored_exactly_next_to_a_look_alike(
    root: ClusterEndpoint, runtime: Runtime, variant: str, host: str
) -> None:
    """The look-alike is created first, so a lookup by name alone would read its hash; the takeover keeps
    the real account's hash and grants, its rollback restores them, and the look-alike is never touched."""
    make_account(root, variant, host, "Look-Alike's-9", "PROCESS ON *.*", "SELECT ON oceanbase.*")
    make_account(root, sql.MONITOR_USER, "%", "Agent's-Own-1", "SELECT ON oceanbase.*")
    with ObSysClient(root) as client:
        by_name = client.query(f"SELECT password FROM mysql.user WHERE user = {sql.quote(sql.MONITOR_USER)}")
    assert len(by_name) == 2  # what a lookup by name alone finds on OceanBase
    real, look_alike = snapshot(root, sql.MONITOR_USER), snapshot(root, variant, host)
    assert real is not None and look_alike is not None and real[0] != look_alike[0]

    created = subtask(runtime, root, "Create default user")
    assert "its password hash and 2 grant line(s) kept for a rollback" in " ".join(
        run(created, cluster_users.create_default_user)
    )
    kept = credentials.find_credential(
        runtime.db, runtime.vault, credentials.CLUSTER, cluster_users.before_credential_name(created)
    )
    assert kept is not None and json.loads(kept.secret) == {"password": real[0], "grants": real[1]}
    taken_over = snapshot(root, sql.MONITOR_USER)
    assert (
        taken_over is not None and taken_over[0] != real[0] and "GRANT SELECT ON *.* TO 'ocp_monitor'" in taken_over[1]
    )
    assert snapshot(root, variant, host) == look_alike

    log = run(subtask(runtime, root, "Create default user", "ROLLBACK"), cluster_users.drop_default_user)
    assert "restored as before the takeover" in " ".join(log)
    assert snapshot(root, sql.MONITOR_USER) == real
    assert snapshot(root, variant, host) == look_alike
    assert login(root, sql.MONITOR_USER, "Agent's-Own-1")
    if host == "%":
        assert login(root, variant, "Look-Alike's-9")


@pytest.mark.usefixtures("clean")
@pytest.mark.parametrize(("variant", "host"), VARIANTS)
def test_a_look_alike_alone_is_not_taken_for_the_monitor_user(
    root: ClusterEndpoint, runtime: Runtime, variant: str, host: str
) -> None:
    """Only the look-alike exists: the takeover creates ocp_monitor (it did not exist before), and its rollback
    drops that account alone."""
    make_account(root, variant, host, "Look-Alike's-9", "PROCESS ON *.*")
    look_alike = snapshot(root, variant, host)

    log = run(subtask(runtime, root, "Create default user"), cluster_users.create_default_user)
    assert f"monitor user {sql.MONITOR_USER} created" in " ".join(log)
    assert snapshot(root, sql.MONITOR_USER) is not None
    row = credentials.describe_credential(runtime.db, kind=credentials.CLUSTER, name="seekdb:1:ocp_monitor")
    assert row is not None and not row["user_existed"]

    log = run(subtask(runtime, root, "Create default user", "ROLLBACK"), cluster_users.drop_default_user)
    assert f"monitor user {sql.MONITOR_USER} dropped" in " ".join(log)
    assert snapshot(root, sql.MONITOR_USER) is None
    assert snapshot(root, variant, host) == look_alike


@pytest.mark.usefixtures("clean")
def test_proxyro_is_not_taken_for_its_look_alike(root: ClusterEndpoint, runtime: Runtime) -> None:
    make_account(root, "PROXYRO", "%", "Look-Alike's-9", "SELECT ON *.*")
    look_alike = snapshot(root, "PROXYRO")

    log = run(subtask(runtime, root, "Set proxyro password to sys tenant"), cluster_users.set_proxyro_password)
    assert "proxyro created" in " ".join(log)
    assert snapshot(root, sql.PROXYRO_USER) is not None
    assert snapshot(root, "PROXYRO") == look_alike
    assert login(root, "PROXYRO", "Look-Alike's-9")


@pytest.mark.usefixtures("clean")
def test_grant_lines_of_an_account_for_other_hosts_are_not_restored(root: ClusterEndpoint) -> None:
    make_account(root, sql.MONITOR_USER, "10.0.0.%", "Look-Alike's-9", "PROCESS ON *.*")
    look_alike = snapshot(root, sql.MONITOR_USER, "10.0.0.%")
    assert look_alike is not None and look_alike[1] == ["GRANT PROCESS ON *.* TO 'ocp_monitor'@'10.0.0.%'"]
    with pytest.raises(ValueError, match="unexpected SHOW GRANTS line for ocp_monitor"):
        sql.grants_from_show(look_alike[1], sql.MONITOR_USER)
