"""The simulated cluster's SQL endpoints: one mysql-mimic server per observer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from mysql_mimic import MysqlServer, ResultColumn, ResultSet
from mysql_mimic.auth import (
    AuthInfo,
    AuthPlugin,
    Decision,
    Forbidden,
    IdentityProvider,
    NativePasswordAuthPlugin,
    Success,
    User,
)
from mysql_mimic.errors import MysqlError
from mysql_mimic.session import BaseSession
from mysql_mimic.types import ColumnType
from mysql_mimic.utils import nonce
from mysql_mimic.variables import GlobalVariables, SessionVariables

from obsim.cluster import ER_ACCESS_DENIED, Result, ServerSpec, SimCluster, SimError

# An auth string no password hashes to, for unknown users: OceanBase answers 1045 for them too.
_NO_PASSWORD = "0" * 40


class _ObNativePassword(NativePasswordAuthPlugin):
    """mysql_native_password with OceanBase's wording on failure."""

    async def auth(self, auth_info: AuthInfo | None = None) -> AsyncGenerator[Decision, AuthInfo]:
        if auth_info and auth_info.handshake_plugin_name == self.name and auth_info.handshake_auth_data:
            challenge = auth_info.handshake_auth_data.rstrip(b"\x00")
        else:
            challenge = nonce(20)
            auth_info = yield challenge + b"\x00"
        assert auth_info is not None
        user = auth_info.user
        if user.auth_string != _NO_PASSWORD and self.password_matches(user, auth_info.data, challenge):
            yield Success(user.name)
        else:
            using = "YES" if auth_info.data else "NO"
            yield Forbidden(f"Access denied for user '{user.name.split('@')[0]}'@'127.0.0.1' (using password: {using})")


class _Identities(IdentityProvider):
    def __init__(self, cluster: SimCluster) -> None:
        self._cluster = cluster
        self._plugin = _ObNativePassword()

    def get_plugins(self) -> Sequence[AuthPlugin]:
        return [self._plugin]

    async def get_user(self, username: str) -> User | None:
        auth = self._cluster.auth_string(username)
        return User(name=username, auth_string=auth or _NO_PASSWORD, auth_plugin=self._plugin.name)


class _SimSession(BaseSession):
    def __init__(self, cluster: SimCluster, server: str) -> None:
        self._cluster = cluster
        self._server = server
        self.variables = SessionVariables(GlobalVariables())
        self.variables.set("version", cluster.version_string, force=True)
        self.variables.set("version_comment", "OceanBase_CE", force=True)
        self.username = None
        self.database = None

    async def handle_query(self, sql: str, attrs: dict[str, str]) -> Any:
        try:
            result = await asyncio.to_thread(self._cluster.execute, sql, self._server, self.username or "")
        except SimError as exc:
            raise MysqlError(exc.message, exc.code) from None
        if not result.columns:
            return None
        return _result_set(result)


def _column_type(values: list[Any]) -> ColumnType:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return ColumnType.LONGLONG
    if present and all(isinstance(v, (int, float)) for v in present):
        return ColumnType.DOUBLE
    return ColumnType.VARCHAR


def _result_set(result: Result) -> ResultSet:
    columns = [
        ResultColumn(name=name, type=_column_type([row[i] for row in result.rows]))
        for i, name in enumerate(result.columns)
    ]
    return ResultSet(rows=result.rows, columns=columns)


async def start_sql_endpoint(cluster: SimCluster, server: ServerSpec, unix_path: str | None = None) -> MysqlServer:
    """Listen on the server's own loopback address and SQL port, or on a unix socket that the
    server's simulated observer process relays its SQL port to."""
    endpoint = MysqlServer(
        session_factory=lambda: _SimSession(cluster, server.label),
        identity_provider=_Identities(cluster),
    )
    if unix_path:
        await endpoint.start_unix_server(path=unix_path)
    else:
        await endpoint.start_server(host=server.ip, port=server.sql_port)
    return endpoint


__all__ = ["ER_ACCESS_DENIED", "start_sql_endpoint"]
