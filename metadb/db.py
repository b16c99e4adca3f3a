"""`Database`: one small interface over SQLite and MySQL-protocol backends.

Statements are written with `?` placeholders and portable SQL; the few dialect differences (auto
increment keys, upserts, advisory locks) live here. Driver errors become `MetadbUnavailable` (the
database cannot be reached: transient) or propagate as programming errors.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql
import pymysql.cursors

from contracts.errors import MetadbUnavailable, TransactionConflict
from contracts.settings import mask_url_password
from contracts.tls import TLS_MODES, tls_context, tls_required
from metadb.mysql_auth import AUTH_PLUGIN_MAP, GuardedConnection

Row = dict[str, Any]
T = TypeVar("T")


# MySQL: deadlock victim, lock wait timeout.
_CONFLICT_CODES = {1213, 1205}


@dataclass(frozen=True)
class MetadbUrl:
    """Where the metadb lives: `sqlite:///path`, a plain path, or `mysql://user:pass@host:port/db`."""

    dialect: str
    path: str = ""
    host: str = ""
    port: int = 3306
    user: str = ""
    password: str = ""
    database: str = ""
    # TLS to a MySQL metadb (`contracts.tls` modes), from the URL's ?tls=…&tls_ca=…&tls_cert=…&tls_key=…
    tls: str = "preferred"
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @classmethod
    def parse(cls, url: str) -> MetadbUrl:
        if url.startswith(("mysql://", "mariadb://", "oceanbase://")):
            scheme = url.split("://", 1)[0]
            # Never quote the URL back: a password with / # ? in it is split in the wrong places.
            malformed = ValueError(
                f"metadb URL ({scheme}://…) is not {scheme}://user:password@host:port/database; percent-encode "
                "any / # ? @ : in the password (e.g. %2F for /)"
            )
            try:
                parts = urlsplit(url)
                port = parts.port or 3306
            except ValueError:
                raise malformed from None
            if not parts.hostname or not parts.path.strip("/") or parts.fragment:
                raise malformed
            options = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
            unknown = sorted(set(options) - {"tls", "tls_ca", "tls_cert", "tls_key"})
            if unknown:
                raise ValueError(f"metadb URL: unknown parameter {unknown[0]}; known: tls, tls_ca, tls_cert, tls_key")
            if options.get("tls", "preferred") not in TLS_MODES:
                raise ValueError(f"metadb URL: tls must be one of {', '.join(TLS_MODES)}")
            return cls(
                dialect="mysql",
                host=parts.hostname,
                port=port,
                user=unquote(parts.username or ""),
                password=unquote(parts.password or ""),
                database=parts.path.strip("/"),
                **options,
            )
        path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
        if "://" in path:
            raise ValueError(f"metadb URL {redact(url)}: use sqlite:///path or mysql://user:pass@host:port/db")
        return cls(dialect="sqlite", path=path)

    def __str__(self) -> str:
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        user = f"{self.user}:***@" if self.user else ""
        return f"mysql://{user}{self.host}:{self.port}/{self.database}?tls={self.tls}"


def redact(url: str) -> str:
    """A URL with its password replaced by ***, for messages and logs."""
    return mask_url_password(url, "***")


def mysql_connect(tls: str, context: ssl.SSLContext | None, **options: Any) -> Any:
    """A PyMySQL connection that logs in as `metadb.mysql_auth` says, with TLS as `tls` says (a
    `contracts.tls` mode) through `context` (built once by the caller: building one per connection costs
    ~20 ms). `preferred` falls back to plaintext when the server offers no TLS or refuses it; the
    `required` modes refuse such a server (error 2026)."""
    options = {**options, "auth_plugin_map": AUTH_PLUGIN_MAP}
    where = (str(options.get("host")), int(options.get("port") or 3306))
    if context is None or (tls == "preferred" and where in _WITHOUT_TLS):
        return GuardedConnection(ssl_disabled=True, **options)
    connection = GuardedConnection(ssl=context, defer_connect=True, **options)
    # PyMySQL makes any given context "required"; its own preferred mode would build a context per connect.
    connection._ssl_required = tls_required(tls)  # type: ignore[attr-defined]
    try:
        connection.connect()
    except pymysql.err.OperationalError as exc:
        # OceanBase offers TLS in its handshake even when it has none configured, then refuses it (1043).
        if tls != "preferred" or not exc.args or exc.args[0] != TLS_NOT_CONFIGURED:
            raise
        _WITHOUT_TLS.add(where)
        return GuardedConnection(ssl_disabled=True, **options)
    return connection


# PyMySQL's "SSL is required but the server doesn't support it"; OceanBase's answer to TLS it has none of.
TLS_NOT_OFFERED = 2026
TLS_NOT_CONFIGURED = 1043
# Servers that answered 1043 to TLS in `preferred` mode: later connections go without trying again. A
# dropped handshake is not taken for an answer: it would turn TLS off for good.
_WITHOUT_TLS: set[tuple[str, int]] = set()


def _private_file(path: Path) -> None:
    """Create a SQLite file readable by its owner only (its -wal and -shm files take the same mode), in
    a directory of the owner's when the directory is new; an existing file is narrowed to 0600."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
        path.chmod(0o600)


class Database:
    """A connection to the metadb; thread-safe (one connection per thread)."""

    def __init__(self, url: str | MetadbUrl) -> None:
        self.url = url if isinstance(url, MetadbUrl) else MetadbUrl.parse(url)
        self.dialect = self.url.dialect
        self._local = threading.local()
        if self.dialect == "sqlite" and self.url.path != ":memory:":
            _private_file(Path(self.url.path))

    # --- connections ------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            connection = sqlite3.connect(self.url.path, timeout=30, isolation_level=None)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA busy_timeout=30000")
            # Switching to WAL needs a moment alone with the file and SQLite does not wait for it:
            # another process opening the database at the same time makes it fail at once.
            deadline = time.monotonic() + 30
            while True:
                try:
                    connection.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            connection.execute("PRAGMA foreign_keys=ON")
            return connection
        try:
            server = mysql_connect(
                self.url.tls,
                self._tls_context(),
                host=self.url.host,
                port=self.url.port,
                user=self.url.user,
                password=self.url.password.encode(),
                database=self.url.database,
                connect_timeout=5,
                read_timeout=30,
                write_timeout=30,
                autocommit=True,
                charset="utf8mb4",
                cursorclass=pymysql.cursors.DictCursor,
            )
        except pymysql.err.OperationalError as exc:
            raise MetadbUnavailable(f"cannot connect to metadb {self.url}: {exc.args[-1]}") from None
        return server

    def _tls_context(self) -> ssl.SSLContext | None:
        try:
            return tls_context(self.url.tls, self.url.tls_ca, self.url.tls_cert, self.url.tls_key)
        except (OSError, ValueError) as exc:
            raise MetadbUnavailable(f"metadb {self.url}: cannot load its TLS files ({exc})") from None

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()
            self._local.connection = None

    def check(self) -> None:
        """Fail with MetadbUnavailable, naming the URL without its password, if unreachable."""
        self.query("SELECT 1 AS ok")

    @property
    def for_update(self) -> str:
        """The locking-read suffix: SQLite's write transactions already serialise."""
        return " FOR UPDATE" if self.dialect == "mysql" else ""

    # --- statements ---------------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "mysql" else sql

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = self._run(sql, args, fetch=True)
        return rows

    def one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        rows = self.query(sql, args)
        return rows[0] if rows else None

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a statement; returns the new row id for an INSERT into an auto-increment table."""
        result: int = self._run(sql, args, fetch=False)
        return result

    def delete(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a DELETE (or another statement); returns how many rows it removed."""
        result: int = self._run(sql, args, fetch=False, count=True)
        return result

    def _run(self, sql: str, args: Sequence[Any], *, fetch: bool, count: bool = False) -> Any:
        for attempt in (1, 2):
            connection = self._connection()
            try:
                if self.dialect == "sqlite":
                    cursor = connection.execute(sql, tuple(args))
                    if fetch:
                        return [dict(row) for row in cursor.fetchall()]
                    return cursor.rowcount if count else cursor.lastrowid or 0
                with connection.cursor() as cursor:
                    cursor.execute(self._sql(sql), tuple(args))
                    if fetch:
                        return [dict(row) for row in cursor.fetchall()]
                    return cursor.rowcount if count else cursor.lastrowid or 0
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
                if exc.args and exc.args[0] in _CONFLICT_CODES:
                    raise TransactionConflict(f"metadb {self.url}: {exc.args[-1]}") from None
                # A dropped connection is reconnected once; a database that stays down is transient.
                self.close()
                if attempt == 2 or getattr(self._local, "in_transaction", False):
                    raise MetadbUnavailable(f"metadb {self.url} unavailable: {exc.args[-1]}") from None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """A transaction on this thread's connection; SQLite takes the write lock at once."""
        connection = self._connection()
        if getattr(self._local, "in_transaction", False):
            yield self
            return
        self._local.in_transaction = True
        try:
            if self.dialect == "sqlite":
                connection.execute("BEGIN IMMEDIATE")
            else:
                try:
                    connection.begin()
                except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
                    # The connection dropped since its last use (a metadb restart); nothing of this
                    # transaction ran yet, so a new connection can start it.
                    self.close()
                    connection = self._connection()
                    connection.begin()
            try:
                yield self
            except BaseException:
                with contextlib.suppress(Exception):
                    connection.rollback() if self.dialect == "mysql" else connection.execute("ROLLBACK")
                raise
            if self.dialect == "sqlite":
                connection.execute("COMMIT")
            else:
                connection.commit()
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
            self.close()
            raise MetadbUnavailable(f"metadb {self.url} unavailable: {exc.args[-1]}") from None
        finally:
            self._local.in_transaction = False

    def retry_conflicts(self, work: Callable[[], T], attempts: int = 5) -> T:
        """Run a transactional `work` again when the database aborted it as a deadlock victim."""
        for attempt in range(1, attempts + 1):
            try:
                return work()
            except TransactionConflict:
                if attempt == attempts:
                    raise
                time.sleep(0.02 * attempt)
        raise AssertionError("unreachable")

    def upsert(self, table: str, keys: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        """Insert a row or update the one with the same unique `keys`: running it twice is a no-op."""
        columns = [*keys, *values]
        params = [*keys.values(), *values.values()]
        marks = ", ".join("?" for _ in columns)
        if self.dialect == "sqlite":
            updates = ", ".join(f"{c} = excluded.{c}" for c in values) or f"{columns[0]} = {columns[0]}"
            sql = (
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
                f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
            )
        else:
            updates = ", ".join(f"{c} = VALUES({c})" for c in values) or f"{columns[0]} = {columns[0]}"
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {updates}"
        self.execute(sql, params)

    def insert_ignore(self, table: str, values: Mapping[str, Any]) -> None:
        """Insert a row unless one with the same unique key exists (the first writer wins)."""
        verb = "INSERT OR IGNORE" if self.dialect == "sqlite" else "INSERT IGNORE"
        marks = ", ".join("?" for _ in values)
        self.execute(f"{verb} INTO {table} ({', '.join(values)}) VALUES ({marks})", list(values.values()))

    @contextlib.contextmanager
    def advisory_lock(self, name: str, timeout: float = 60) -> Iterator[None]:
        """Serialise a section across processes (migrations): GET_LOCK on MySQL, a write lock on SQLite."""
        if self.dialect == "sqlite":
            with self.transaction():
                yield
            return
        deadline = time.monotonic() + timeout
        row = self.one("SELECT GET_LOCK(?, ?) AS got", (name, int(timeout)))
        if not row or row["got"] != 1 or time.monotonic() > deadline:
            raise MetadbUnavailable(f"could not take lock {name} on metadb {self.url} within {timeout:.0f}s")
        try:
            yield
        finally:
            self.query("SELECT RELEASE_LOCK(?) AS released", (name,))
