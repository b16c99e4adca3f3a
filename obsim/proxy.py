"""A simulated OBProxy (ODP) in front of the simulated cluster.

It speaks the MySQL protocol on its own loopback port, takes logins only in OBProxy's forms, and runs each
statement on one of the cluster's servers as a direct session of the bare user there would.

Like OBProxy it reads the login name before any password and refuses, then closes the connection:

- a cluster name other than this cluster's, a cluster id other than its id, or no cluster name at all:
  `ERROR 4669 (HY000): cluster not exist` (OB_CLUSTER_NOT_EXIST). OBProxy answers so when its config server
  does not know the name, or when the name came from its default while it serves more than one cluster; this
  proxy has no default cluster, so a plain `root` or `root@sys` is refused too. Sources: oceanbase/obproxy,
  ObMysqlSM's cluster lookup (src/obproxy/proxy/mysql/ob_mysql_sm.cpp) and
  ObConfigServerProcessor::get_cluster_info; the client-side text from OceanBase's connection guide
  ("Incorrect cluster name").
- a tenant other than sys: `ERROR 4012 (HY000): Get Location Cache Fail`, what OceanBase's connection guide
  shows through ODP for a tenant name that does not exist ("Incorrect tenant name"). The simulator models
  the sys tenant only, so it routes no other.
- a wrong password or an unknown user: the server's `ERROR 1045 (28000): Access denied for user ...`, which
  OBProxy passes on.

Login names are split as OBProxy's ObProxyAuthParser splits them: `user@tenant#cluster:cluster_id` and its
shorter forms (a missing tenant is sys), or `cluster:tenant:user[:cluster_id]` when the name has neither
'@' nor '#' but two ':'.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from mysql_mimic.connection import Connection
from mysql_mimic.stream import MysqlStream

from obsim.cluster import SimCluster, SimError
from obsim.network import PROXY, Network
from obsim.server import SimIdentities, SimSession, SimSqlServer, SqlEndpoint, serve_sql

ER_CLUSTER_NOT_EXIST = 4669
ER_LOCATION_CACHE = 4012  # with "Get Location Cache Fail": ODP's answer for a tenant it cannot find

# The endpoint name the login and statement logs give the proxy.
PROXY_ENDPOINT = PROXY
# What SELECT PROXY_VERSION() answers: a released ODP version that serves OceanBase 4.2.
PROXY_VERSION = "4.2.3.0"
_PROXY_VERSION_SQL = re.compile(r"(?i)\s*SELECT\s+PROXY_VERSION\s*\(\s*\)\s*;?\s*")


@dataclass(frozen=True)
class ProxyLogin:
    """A login name's parts as OBProxy reads them; None where the name has none."""

    user: str
    tenant: str | None
    cluster: str | None
    cluster_id: str | None


def parse_login(name: str) -> ProxyLogin:
    """Split a login name the way OBProxy does (see the module docstring)."""
    if "@" not in name and "#" not in name and name.count(":") >= 2:
        cluster, tenant, rest = name.split(":", 2)
        user, _, cluster_id = rest.partition(":")
        return ProxyLogin(user, tenant or None, cluster or None, cluster_id or None)
    user, at, rest = name.partition("@")
    if at:
        tenant, _, cluster_part = rest.partition("#")
    else:
        user, _, cluster_part = name.partition("#")
        tenant = ""
    cluster, _, cluster_id = cluster_part.partition(":")
    return ProxyLogin(user, tenant or None, cluster or None, cluster_id or None)


def login_refusal(cluster: SimCluster, login: ProxyLogin) -> SimError | None:
    """The error OBProxy answers a login name with before any password is checked, or None."""
    wrong_id = login.cluster_id is not None and (
        not login.cluster_id.isdigit() or int(login.cluster_id) != cluster.cluster_id
    )
    if login.cluster != cluster.cluster_name or wrong_id:
        return SimError(ER_CLUSTER_NOT_EXIST, "cluster not exist")
    if (login.tenant or "sys") != "sys":
        return SimError(ER_LOCATION_CACHE, "Get Location Cache Fail")
    return None


class _ProxySession(SimSession):
    """A client's session on the proxy: each statement runs on the server the cluster routes it to."""

    def __init__(self, cluster: SimCluster) -> None:
        super().__init__(cluster, PROXY_ENDPOINT)

    def route(self) -> str:
        return self.cluster.proxy_route()

    async def handle_query(self, sql: str, attrs: dict[str, str]) -> Any:
        if _PROXY_VERSION_SQL.fullmatch(sql):
            return [(PROXY_VERSION,)], ["proxy_version()"]
        return await super().handle_query(sql, attrs)


class _ProxyConnection(Connection):
    """A client connection as OBProxy handles it: the login name first, then the password as the bare user;
    a refused login ends the connection."""

    async def authenticate(
        self,
        username: str,
        auth_response: bytes,
        client_plugin_name: str | None,
        connect_attrs: dict[str, str],
        auth_state: Any = None,
        server_plugin: Any = None,
    ) -> None:
        session: _ProxySession = self.session
        login = parse_login(username)
        refusal = login_refusal(session.cluster, login)
        if refusal is not None:
            session.refusal = refusal.code
            await self.stream.write(self.error(msg=refusal.message, code=refusal.code))
            return
        await super().authenticate(
            login.user, auth_response, client_plugin_name, connect_attrs, auth_state, server_plugin
        )

    async def command_phase(self) -> None:
        # mysql-mimic reads commands even after a refused login; OBProxy disconnects.
        if self.session.username is not None:
            await super().command_phase()


class _ProxyServer(SimSqlServer):
    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # mysql-mimic builds its own Connection here and offers no other way to use another class.
        connection = _ProxyConnection(
            stream=MysqlStream(reader, writer),
            session=self.session_factory(),
            control=self.control,
            server_capabilities=self.capabilities,
            identity_provider=self.identity_provider,
            ssl=self.ssl,
        )
        connection.connection_id = await self.control.add(connection)
        try:
            await connection.start()
        finally:
            writer.close()
            await self.control.remove(connection.connection_id)


async def start_proxy_endpoint(
    cluster: SimCluster, address: str, port: int, network: Network | None = None
) -> SqlEndpoint:
    """Listen as OBProxy for `cluster` on `address`:`port` (0 picks a free port; see `SqlEndpoint.port`)."""
    network = network or Network()
    endpoint = _ProxyServer(
        network.endpoint(PROXY, address, port),
        session_factory=lambda: _ProxySession(cluster),
        identity_provider=SimIdentities(cluster),
    )
    return await serve_sql(endpoint, network, (address, port))
