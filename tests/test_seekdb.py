"""The statements that carry user names and passwords, against a real OceanBase parser (seekdb): the
monitor and proxyro users are created, granted, re-passworded and dropped with hostile passwords, and
log in with them; a rejected statement never echoes its password."""

from __future__ import annotations

import pytest

from activities import cluster_sql as sql
from activities.ob_sys_client import ClusterTls, ObSysClient
from contracts.errors import BadCredentials, ClusterSqlError, TlsRefused
from contracts.topology import ClusterEndpoint

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
