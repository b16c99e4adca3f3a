"""The simulated cluster's SQL endpoints: one mysql-mimic server per observer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
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
from obsim.network import Endpoint, Network, Relay

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


class SimIdentities(IdentityProvider):
    """The cluster's users, checked with mysql_native_password; a name the cluster does not know fails as a
    wrong password does."""

    def __init__(self, cluster: SimCluster) -> None:
        self._cluster = cluster
        self._plugin = _ObNativePassword()

    def get_plugins(self) -> Sequence[AuthPlugin]:
        return [self._plugin]

    async def get_user(self, username: str) -> User | None:
        auth = self._cluster.auth_string(username)
        return User(name=username, auth_string=auth or _NO_PASSWORD, auth_plugin=self._plugin.name)


class SimSession(BaseSession):
    """A client's session on one server's SQL port: its statements run on that server as the logged-in user."""

    def __init__(self, cluster: SimCluster, server: str) -> None:
        self.cluster = cluster
        self._server = server
        # The error a login was refused with before its password was checked (see obsim.proxy).
        self.refusal: int | None = None
        self.variables = SessionVariables(GlobalVariables())
        self.variables.set("version", cluster.version_string, force=True)
        self.variables.set("version_comment", "OceanBase_CE", force=True)
        self.username = None
        self.database = None

    @property
    def endpoint(self) -> str:
        """Where the client connected, as the login and statement logs name it."""
        return self._server

    @property
    def login(self) -> str:
        """The login name as the client sent it (mysql-mimic keeps it as `external_user`)."""
        return str(self.variables.get("external_user") or "")

    def route(self) -> str:
        """The server (ip:rpc_port) the next statement runs on."""
        return self._server

    async def init(self, connection: Any) -> None:
        # mysql-mimic calls this after the login phase, whether the login succeeded or not.
        error = self.refusal or (None if self.username else ER_ACCESS_DENIED)
        await asyncio.to_thread(self.cluster.record_login, self.endpoint, self.login, error)

    async def handle_query(self, sql: str, attrs: dict[str, str]) -> Any:
        try:
            result = await asyncio.to_thread(
                self.cluster.execute,
                sql,
                self.route(),
                self.username or "",
                login=self.login,
                endpoint=self.endpoint,
            )
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


class SimSqlServer(MysqlServer):
    """A mysql-mimic server that counts the connections it accepts on its endpoint."""

    def __init__(self, endpoint: Endpoint, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint

    async def _client_connected_cb(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self.endpoint.connection():
            await self.serve_connection(reader, writer)

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await super()._client_connected_cb(reader, writer)


@dataclass
class SqlEndpoint:
    """A listening SQL endpoint: its server and, under network conditions, the relay in front of it."""

    server: SimSqlServer
    relay: Relay | None

    @property
    def port(self) -> int:
        """The public port (for a unix socket's server: 0)."""
        if self.relay is not None:
            return self.relay.port
        address = self.server.sockets()[0].getsockname()
        return int(address[1]) if isinstance(address, tuple) else 0

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.close()
        self.server.close()


async def serve_sql(server: SimSqlServer, network: Network, listen: tuple[str, int] | str) -> SqlEndpoint:
    """Listen with `server` on `listen` (address and port, or a unix socket path); under network
    conditions the server listens on an internal loopback port behind a relay on `listen`."""
    if network.relayed:
        await server.start_server(host="127.0.0.1", port=0)
        internal = server.sockets()[0].getsockname()
        relay = await network.relay(server.endpoint, listen, (internal[0], internal[1]))
        return SqlEndpoint(server, relay)
    if isinstance(listen, str):
        await server.start_unix_server(path=listen)
    else:
        await server.start_server(host=listen[0], port=listen[1])
    endpoint = SqlEndpoint(server, None)
    if not server.endpoint.port:
        server.endpoint.port = endpoint.port
    return endpoint


async def start_sql_endpoint(
    cluster: SimCluster, server: ServerSpec, unix_path: str | None = None, network: Network | None = None
) -> SqlEndpoint:
    """Listen on the server's own loopback address and SQL port, or on a unix socket that the
    server's simulated observer process relays its SQL port to."""
    network = network or Network()
    sql = SimSqlServer(
        network.endpoint("sql", server.ip, server.sql_port),
        session_factory=lambda: SimSession(cluster, server.label),
        identity_provider=SimIdentities(cluster),
    )
    return await serve_sql(sql, network, unix_path or (server.ip, server.sql_port))


__all__ = ["ER_ACCESS_DENIED", "SimIdentities", "SimSession", "SimSqlServer", "SqlEndpoint", "start_sql_endpoint"]
