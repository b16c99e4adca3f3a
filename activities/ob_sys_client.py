"""`ObSysClient`: a small SQL client for the cluster's sys tenant as root.

It connects lazily, sets connect and read timeouts, and turns driver errors into the project's
error tree so that activities report what failed and what to do. It tells how its live connection is
protected (`connection_security`), for the precheck to warn about a certificate nobody checked.

With a pool (`activities.connections.SqlPool`), each statement borrows the worker's connection for the
endpoint and login and gives it back when it succeeded; on any error the connection is closed instead.
A read (`read`) that finds a reused connection gone is sent once more on a new one; a write never is, as
it may have been applied (the subtask's own retry decides).
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import pymysql
import pymysql.cursors
from opentelemetry import trace

from activities.connections import SqlPool, file_signature, secret_digest
from contracts.errors import (
    BadCredentials,
    ClusterSqlError,
    ClusterUnreachable,
    TakeoverError,
    TlsRefused,
)
from contracts.tls import tls_context
from contracts.topology import ClusterEndpoint
from metadb.db import TLS_NOT_CONFIGURED, TLS_NOT_OFFERED, mysql_connect
from metadb.mysql_auth import AUTH_PLUGIN_REFUSED

if TYPE_CHECKING:
    from activities.facts import Fact

T = TypeVar("T")

_tracer = trace.get_tracer("ob_takeover.sql")

# Statements quote with backslash escapes (cluster_sql.quote): a session must not be in this mode.
_NO_BACKSLASH_ESCAPES = "NO_BACKSLASH_ESCAPES"

# MySQL client error codes that mean the server could not be reached or the connection dropped.
_NETWORK_ERRORS = {2003, 2005, 2006, 2013, 2055}
# A connection that was open and is gone: server gone away, lost during a query.
_CONNECTION_GONE = {2006, 2013}
_ACCESS_DENIED = 1045
# OBProxy's answers to a login for a cluster or tenant it does not serve.
_PROXY_CLUSTER_NOT_EXIST = 4669
_PROXY_TENANT_NOT_FOUND = 4012


def login_user(endpoint: ClusterEndpoint, user: str = "root", tenant: str = "sys") -> str:
    """The login name: `root@sys` directly, `root@sys#cluster[:id]` through OBProxy."""
    name = f"{user}@{tenant}"
    if endpoint.connection_mode == "proxy":
        name += f"#{endpoint.cluster_name}"
        if endpoint.ob_cluster_id is not None:
            name += f":{endpoint.ob_cluster_id}"
    return name


def _pin_sql_mode(connection: pymysql.connections.Connection[Any]) -> None:
    """Take NO_BACKSLASH_ESCAPES out of the session's sql_mode: in that mode `\\'` would end a string
    literal, and a password with a quote in it would be read as SQL."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@SESSION.sql_mode AS MODE")
        row = cursor.fetchone()
        modes = [mode for mode in str((row or {}).get("MODE") or "").split(",") if mode]
        if _NO_BACKSLASH_ESCAPES in (mode.upper() for mode in modes):
            kept = ",".join(mode for mode in modes if mode.upper() != _NO_BACKSLASH_ESCAPES)
            if not re.fullmatch(r"[A-Za-z_,]*", kept):
                raise pymysql.err.OperationalError(0, f"unexpected sql_mode {kept!r}")
            cursor.execute(f"SET SESSION sql_mode = '{kept}'")


@dataclass(frozen=True)
class ClusterTls:
    """How connections to clusters use TLS (`contracts.tls` modes); the worker's `cluster_tls` settings."""

    mode: str = "preferred"
    ca_file: str = ""


DEFAULT_TLS = ClusterTls()


@dataclass(frozen=True)
class ConnectionSecurity:
    """How a live connection to a cluster is protected: encrypted or not, and what of the server's
    certificate was checked (`preferred` and `required` check nothing, `verify_ca` the signature,
    `verify_identity` the host name too)."""

    encrypted: bool
    certificate_verified: bool = False
    host_name_verified: bool = False

    @classmethod
    def of(cls, sock: object) -> ConnectionSecurity:
        """Of a connection's socket: TLS when it is an `ssl.SSLSocket`, checked as its context says."""
        if not isinstance(sock, ssl.SSLSocket):
            return cls(encrypted=False)
        context = sock.context
        verified = context.verify_mode != ssl.CERT_NONE
        return cls(
            encrypted=True, certificate_verified=verified, host_name_verified=verified and context.check_hostname
        )


@runtime_checkable
class ReportsConnectionSecurity(Protocol):
    """A cluster port that can tell how its live connection is protected. `ObSysClient` can; the plan
    preview's recorder and test wrappers of a port have no connection of their own to tell about."""

    def connection_security(self) -> ConnectionSecurity | None: ...


def _connection_gone(exc: pymysql.err.MySQLError) -> bool:
    """Whether the error says the connection itself is gone (not that the statement was refused)."""
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    return bool(exc.args) and exc.args[0] in _CONNECTION_GONE


class ObSysClient:
    """Queries on the sys tenant (as root unless `user` says otherwise): over a connection of its own, or,
    with `pool`, over the worker's connection for this endpoint and login."""

    def __init__(
        self,
        endpoint: ClusterEndpoint,
        *,
        user: str = "root",
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        tls: ClusterTls = DEFAULT_TLS,
        pool: SqlPool | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._tls = tls
        self._user = user
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool = pool
        self._connection: pymysql.connections.Connection[Any] | None = None
        self._security: ConnectionSecurity | None = None

    @property
    def where(self) -> str:
        host = self._endpoint.address
        return f"{'[' + host + ']' if ':' in host else host}:{self._endpoint.port}"

    def pool_key(self) -> Hashable:
        """What a pooled connection must share to serve this client: endpoint, login, password (as a
        digest), TLS settings and read timeout. The session state (sql_mode) is pinned when it connects."""
        endpoint = self._endpoint
        return (
            endpoint.address,
            endpoint.port,
            endpoint.connection_mode,
            login_user(endpoint, self._user),
            secret_digest(endpoint.root_sys_password),
            self._tls.mode,
            file_signature(self._tls.ca_file) or self._tls.ca_file,
            self._read_timeout,
        )

    def _new_connection(self) -> pymysql.connections.Connection[Any]:
        connection: pymysql.connections.Connection[Any] | None = None
        try:
            connection = mysql_connect(
                self._tls.mode,
                tls_context(self._tls.mode, self._tls.ca_file),
                host=self._endpoint.address,
                port=self._endpoint.port,
                user=login_user(self._endpoint, self._user),
                # Bytes: PyMySQL would encode a str password as latin-1 and fail on other characters.
                password=(self._endpoint.root_sys_password or "").encode(),
                charset="utf8mb4",
                connect_timeout=self._connect_timeout,
                read_timeout=self._read_timeout,
                write_timeout=self._read_timeout,
                autocommit=True,
                cursorclass=pymysql.cursors.DictCursor,
            )
            _pin_sql_mode(connection)
        except pymysql.err.MySQLError as exc:
            if connection is not None:
                with contextlib.suppress(pymysql.err.Error):
                    connection.close()
            raise self._translate(exc, None) from None
        return connection

    def _borrow(self) -> tuple[pymysql.connections.Connection[Any], bool]:
        """A connection for one statement, and whether it is the pool's and served statements before."""
        if self._pool is not None:
            connection, reused = self._pool.borrow(self.pool_key(), self._new_connection)
        else:
            if self._connection is None:
                self._connection = self._new_connection()
            connection, reused = self._connection, False
        # PyMySQL keeps the socket it wrapped in TLS (or left plain) to itself.
        self._security = ConnectionSecurity.of(getattr(connection, "_sock", None))
        return connection, reused

    def _give_back(self, connection: pymysql.connections.Connection[Any]) -> None:
        if self._pool is not None:
            self._pool.give_back(self.pool_key(), connection)

    def _drop(self, connection: pymysql.connections.Connection[Any]) -> None:
        """Close a connection that saw an error: it is never used again."""
        if self._pool is not None:
            self._pool.discard(self.pool_key(), connection)
        else:
            self.close()

    def connection_security(self) -> ConnectionSecurity | None:
        """How the connection of the last statement was protected; None before a statement has connected."""
        return self._security

    def read(self, fact: Fact[T]) -> T:
        """The answer to a fact: its statement's rows, parsed."""
        return fact.parse(self._run(fact.statement, None, read_only=True))

    def query(self, sql: str, args: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a statement as dicts keyed by upper-case column names."""
        return self._run(sql, args, read_only=False)

    def _run(self, sql: str, args: Sequence[Any] | None, *, read_only: bool) -> list[dict[str, Any]]:
        verb = (sql.split(None, 1) or ["?"])[0].upper()
        # A span per statement, named by its verb only: values (and passwords) never go into a trace.
        with _tracer.start_as_current_span(f"SQL {verb}", attributes={"db.system": "oceanbase", "db.operation": verb}):
            while True:
                connection, reused = self._borrow()
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(sql, args)
                        rows = cursor.fetchall()
                except pymysql.err.MySQLError as exc:
                    self._drop(connection)
                    if read_only and reused and _connection_gone(exc):
                        # The pool's connection died while it was idle: a read is sent once more, on a new one.
                        read_only = False
                        continue
                    raise self._translate(exc, sql) from None
                except BaseException:
                    self._drop(connection)
                    raise
                self._give_back(connection)
                return [{str(k).upper(): v for k, v in row.items()} for row in rows]

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> None:
        self.query(sql, args)

    def _translate(self, exc: pymysql.err.MySQLError, sql: str | None) -> TakeoverError:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        if code == TLS_NOT_OFFERED or (code == TLS_NOT_CONFIGURED and "TLS" in text):
            return TlsRefused(
                f"the server does not offer TLS and cluster_tls is {self._tls.mode}; enable TLS on the cluster or "
                "set cluster_tls (OB_TAKEOVER_CLUSTER_TLS) to preferred",
                node=self.where,
                code=code,
            )
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text:
            return TlsRefused(
                f"the server's TLS certificate is not accepted ({text}); check cluster_tls_ca "
                "(OB_TAKEOVER_CLUSTER_TLS_CA) and that the certificate names this address",
                node=self.where,
                code=code,
            )
        if code == AUTH_PLUGIN_REFUSED:
            return BadCredentials(
                f"{text}; the server at this address is not to be trusted", node=self.where, code=code
            )
        if code == _ACCESS_DENIED:
            return BadCredentials(
                f"login as {login_user(self._endpoint, self._user)} refused ({code}): check "
                + ("rootSysPassword" if self._user == "root" else f"the password of {self._user}")
                + (" and clusterName/obClusterId" if self._endpoint.connection_mode == "proxy" else ""),
                node=self.where,
                code=code,
            )
        proxy = self._endpoint.connection_mode == "proxy"
        if proxy and sql is None and code in (_PROXY_CLUSTER_NOT_EXIST, _PROXY_TENANT_NOT_FOUND):
            return BadCredentials(
                f"login as {login_user(self._endpoint, self._user)} refused by OBProxy ({code}: {text}): check "
                "clusterName and obClusterId against the clusters this proxy serves",
                node=self.where,
                code=code,
            )
        if code in _NETWORK_ERRORS or (isinstance(exc, pymysql.err.OperationalError) and sql is None):
            return ClusterUnreachable(
                f"cannot reach the cluster ({code}: {text}); check address, port and network",
                node=self.where,
                code=code,
            )
        if sql and re.search(r"IDENTIFIED\s+BY", sql, re.IGNORECASE):
            # The server may quote the statement back ("near '…'"): never let a password through.
            text = re.sub(r"near '.*' at line", "near '***' at line", text, flags=re.DOTALL)
        statement = f" in `{sql.split()[0]} …`" if sql else ""
        return ClusterSqlError(f"OceanBase error {code}{statement}: {text}", node=self.where, code=code)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(pymysql.err.Error):
                self._connection.close()
            self._connection = None

    def __enter__(self) -> ObSysClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
