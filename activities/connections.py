"""The worker's connection pools: every subtask that works on a host or a cluster endpoint reuses the
connection the worker already has there, as pyinfra and Fabric connect to a host once per run.

- SQL (`SqlPool`, pymysql, used from threads): connections per endpoint and login (the password as a
  digest, the TLS settings), each lent to one statement at a time. A statement that waits for the busy
  connection longer than a new one took to open (at most `share_wait`) opens another (at most `sql_per_key`
  per endpoint and login): far from the cluster, waiting behind a queue of statements costs more than a
  handshake; near it, one connection serves every statement.
- SSH (`SshPool`, asyncssh, on the event loop): one connection per host and login (the credential as a
  digest, the host-key policy), shared by every subtask on the host, at most `max_channels` commands at a
  time on it (below sshd's default MaxSessions of 10).

A pool never hides a failure: a connection that saw any error, a cancellation or a timeout is dropped,
never lent again; a failed connect is not remembered (the next borrower connects again). A connection is
closed after `idle_timeout` unused and not lent after `max_age`. Host keys are verified as before on every
new connection: a reused one was verified, under the same policy and known_hosts file, when it was opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import select
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

# Secrets are keyed by an HMAC under a key of this process alone: never kept or compared in clear text,
# and a digest seen elsewhere tells nothing about the secret.
_DIGEST_KEY = secrets.token_bytes(32)


def secret_digest(*parts: str | bytes | None) -> str:
    """A digest of secrets that identifies them in this process only (for pool keys; never logged)."""
    mac = hmac.new(_DIGEST_KEY, digestmod=hashlib.sha256)
    for part in parts:
        data = b"\x00" if part is None else (part.encode() if isinstance(part, str) else part)
        mac.update(len(data).to_bytes(8, "big") + data)
    return mac.hexdigest()


def file_signature(path: str | None) -> tuple[Any, ...] | None:
    """What changes when a file is replaced or rewritten (inode, size, modification time); None when absent."""
    if not path:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (path, info.st_ino, info.st_size, info.st_mtime_ns)


@dataclass(frozen=True)
class PoolLimits:
    """How long connections live and how many are shared."""

    idle_timeout: float = 60.0
    max_age: float = 600.0
    # Commands at a time on one SSH connection: sshd refuses sessions beyond MaxSessions (10 by default).
    max_channels: int = 8
    # A statement waits this long for its endpoint's busy connection before it opens another.
    share_wait: float = 1.0
    sql_per_key: int = 4


# --- SQL -------------------------------------------------------------------------------------------


def _socket_idle(sock: Any) -> bool:
    """Whether an idle connection's socket has nothing to read: a server says nothing unasked, so anything
    readable (end of stream, a reset, a farewell error packet) means the connection is gone. No round trip."""
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


@dataclass
class _Idle:
    connection: Any
    born: float
    since: float


@dataclass
class _SqlSlot:
    idle: list[_Idle] = field(default_factory=list)
    lent: int = 0
    # How long the last new connection took to open: the longest a statement waits for a busy one.
    connect_seconds: float | None = None


class SqlPool:
    """pymysql connections by key, each lent to one borrower (one thread) at a time."""

    def __init__(self, limits: PoolLimits | None = None) -> None:
        self.limits = limits or PoolLimits()
        self._cond = threading.Condition()
        self._slots: dict[Hashable, _SqlSlot] = {}
        self._born: dict[int, float] = {}
        self._reaper: threading.Thread | None = None
        self._closed = False

    def borrow(self, key: Hashable, connect: Callable[[], Any]) -> tuple[Any, bool]:
        """A connection for `key`, lent to the caller alone until `give_back` or `discard`, and whether it
        was used before (a new one comes from `connect`, called without the pool's lock)."""
        stale: list[Any] = []
        try:
            with self._cond:
                slot = self._slots.setdefault(key, _SqlSlot())
                wait = self.limits.share_wait if slot.connect_seconds is None else slot.connect_seconds
                share_until = time.monotonic() + min(wait, self.limits.share_wait)
                while True:
                    slot = self._slots.setdefault(key, _SqlSlot())
                    now = time.monotonic()
                    while slot.idle:
                        idle = slot.idle.pop()
                        young = now - idle.born < self.limits.max_age
                        if young and _socket_idle(getattr(idle.connection, "_sock", None)):
                            slot.lent += 1
                            return idle.connection, True
                        stale.append(idle.connection)
                    if slot.lent == 0 or (slot.lent < self.limits.sql_per_key and now >= share_until):
                        slot.lent += 1
                        break
                    self._cond.wait(max(share_until - now, 0) or 1.0)
        finally:
            self._close_all(stale)
        began = time.monotonic()
        try:
            connection = connect()
        except BaseException:
            with self._cond:
                self._slots[key].lent -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._born[id(connection)] = now = time.monotonic()
            self._slots[key].connect_seconds = now - began
        return connection, False

    def give_back(self, key: Hashable, connection: Any) -> None:
        """Return a connection whose last statement succeeded, for the next borrower."""
        now = time.monotonic()
        with self._cond:
            slot = self._slots[key]
            slot.lent -= 1
            born = self._born.get(id(connection), now)
            keep = not self._closed and now - born < self.limits.max_age and len(slot.idle) < self.limits.sql_per_key
            if keep:
                slot.idle.append(_Idle(connection, born, now))
                self._start_reaper()
            else:
                self._born.pop(id(connection), None)
            self._cond.notify_all()
        if not keep:
            self._close_all([connection])

    def discard(self, key: Hashable, connection: Any) -> None:
        """Close a connection that saw an error (or was interrupted): it is never lent again."""
        with self._cond:
            self._slots[key].lent -= 1
            self._born.pop(id(connection), None)
            self._cond.notify_all()
        self._close_all([connection])

    def idle_count(self) -> int:
        with self._cond:
            return sum(len(slot.idle) for slot in self._slots.values())

    def close(self) -> None:
        """Close every idle connection; connections lent now are closed when they come back."""
        with self._cond:
            self._closed = True
            idle = [i.connection for slot in self._slots.values() for i in slot.idle]
            for slot in self._slots.values():
                slot.idle.clear()
            self._cond.notify_all()
        self._close_all(idle)

    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, name="ob-takeover-sql-idle", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        """Close connections idle for `idle_timeout` (or past `max_age`); ends when none is idle."""
        while True:
            expired: list[Any] = []
            with self._cond:
                now = time.monotonic()
                deadlines = []
                for slot in self._slots.values():
                    kept = []
                    for idle in slot.idle:
                        deadline = min(idle.since + self.limits.idle_timeout, idle.born + self.limits.max_age)
                        if deadline <= now:
                            expired.append(idle.connection)
                            self._born.pop(id(idle.connection), None)
                        else:
                            kept.append(idle)
                            deadlines.append(deadline)
                    slot.idle[:] = kept
                if not deadlines:
                    self._reaper = None
            self._close_all(expired)
            if not deadlines:
                return
            with self._cond:
                self._cond.wait(max(min(deadlines) - time.monotonic(), 0.01))

    @staticmethod
    def _close_all(connections: list[Any]) -> None:
        for connection in connections:
            with contextlib.suppress(Exception):
                connection.close()


# --- SSH -------------------------------------------------------------------------------------------


def _key_text(key: str) -> str:
    """A public key without its comment, for comparing keys."""
    return " ".join(key.split()[:2])


@dataclass(eq=False)
class SshLease:
    """One SSH connection in the pool and the subtasks using it."""

    key: Hashable
    connection: asyncssh.SSHClientConnection
    server_key: str
    channels: asyncio.Semaphore
    born: float
    users: int = 0
    retired: bool = False
    idle_timer: asyncio.TimerHandle | None = None

    def usable(self, max_age: float) -> bool:
        return not self.retired and not self.connection.is_closed() and time.monotonic() - self.born < max_age


class _LoopConnections:
    """One event loop's SSH connections (a connection belongs to the loop that opened it)."""

    def __init__(self) -> None:
        self.leases: dict[Hashable, list[SshLease]] = {}
        self.connecting: dict[Hashable, asyncio.Lock] = {}


class SshPool:
    """asyncssh connections by host and login, shared by the subtasks on the same event loop; with the
    credentials' imported private keys and the parsed known_hosts files."""

    def __init__(self, limits: PoolLimits | None = None) -> None:
        self.limits = limits or PoolLimits()
        self._loops: dict[asyncio.AbstractEventLoop, _LoopConnections] = {}
        self._keys: dict[str, asyncssh.SSHKey] = {}
        self._known_hosts: dict[str, tuple[tuple[Any, ...] | None, asyncssh.SSHKnownHosts]] = {}
        self._lock = threading.Lock()

    def private_key(self, secret: str, passphrase: str | None) -> asyncssh.SSHKey:
        """The credential's private key, imported once (imports cost milliseconds, with a passphrase many)."""
        digest = secret_digest(secret, passphrase)
        with self._lock:
            key = self._keys.get(digest)
        if key is None:
            key = asyncssh.import_private_key(secret, passphrase)
            with self._lock:
                self._keys[digest] = key
        return key

    def known_hosts(self, path: str) -> asyncssh.SSHKnownHosts:
        """A known_hosts file, parsed once and again whenever it changes."""
        signature = file_signature(path)
        with self._lock:
            cached = self._known_hosts.get(path)
        if cached is not None and cached[0] == signature:
            return cached[1]
        parsed = asyncssh.read_known_hosts(path)
        with self._lock:
            self._known_hosts[path] = (signature, parsed)
        return parsed

    async def lease(
        self,
        key: Hashable,
        connect: Callable[[], Awaitable[asyncssh.SSHClientConnection]],
        accept: Callable[[SshLease], bool] = lambda lease: True,
    ) -> SshLease:
        """A connection for `key` that `accept` takes (an open one, or a new one from `connect`); give it back
        with `release`. Connects to one key happen one at a time, so parallel subtasks share the first."""
        here = self._here()
        found = self._find(here, key, accept)
        if found is not None:
            return found
        lock = here.connecting.setdefault(key, asyncio.Lock())
        async with lock:
            found = self._find(here, key, accept)
            if found is not None:
                return found
            connection = await connect()
            server_key = connection.get_server_host_key()
            lease = SshLease(
                key,
                connection,
                _key_text(server_key.export_public_key().decode()) if server_key is not None else "",
                asyncio.Semaphore(self.limits.max_channels),
                time.monotonic(),
                users=1,
            )
            here.leases.setdefault(key, []).append(lease)
            return lease

    async def release(self, lease: SshLease, *, failed: bool) -> None:
        """Give a connection back; with `failed` (an error or a cancellation while it was used) it is never
        lent again and closes once its other users are done."""
        lease.users -= 1
        if failed or not lease.usable(self.limits.max_age):
            self._retire(lease)
        if lease.users > 0:
            return
        if lease.retired:
            lease.connection.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lease.connection.wait_closed(), 5)
        else:
            loop = asyncio.get_running_loop()
            lease.idle_timer = loop.call_later(self.limits.idle_timeout, self._expire, lease)

    def open_count(self) -> int:
        """SSH connections open on the running loop."""
        return sum(len(leases) for leases in self._here().leases.values())

    async def close(self) -> None:
        """Close every connection (on other loops: asked to close there, if those loops still run)."""
        current = asyncio.get_running_loop()
        for loop, connections in list(self._loops.items()):
            leases = [lease for group in connections.leases.values() for lease in group]
            connections.leases.clear()
            for lease in leases:
                lease.retired = True
                if loop is current:
                    if lease.idle_timer is not None:
                        lease.idle_timer.cancel()
                    lease.connection.close()
                elif not loop.is_closed():
                    loop.call_soon_threadsafe(lease.connection.close)
            if loop is current:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.gather(*(lease.connection.wait_closed() for lease in leases)), 5)
        self._loops.clear()

    def _here(self) -> _LoopConnections:
        loop = asyncio.get_running_loop()
        for other in [other for other in self._loops if other.is_closed()]:
            del self._loops[other]
        return self._loops.setdefault(loop, _LoopConnections())

    def _find(self, here: _LoopConnections, key: Hashable, accept: Callable[[SshLease], bool]) -> SshLease | None:
        for lease in list(here.leases.get(key, [])):
            if not lease.usable(self.limits.max_age):
                self._retire(lease)
                if lease.users == 0:
                    lease.connection.close()
                continue
            if accept(lease):
                if lease.idle_timer is not None:
                    lease.idle_timer.cancel()
                    lease.idle_timer = None
                lease.users += 1
                return lease
        return None

    def _retire(self, lease: SshLease) -> None:
        lease.retired = True
        here = self._loops.get(asyncio.get_running_loop())
        group = here.leases.get(lease.key, []) if here is not None else []
        if lease in group:
            group.remove(lease)
            if not group and here is not None:
                del here.leases[lease.key]

    def _expire(self, lease: SshLease) -> None:
        lease.idle_timer = None
        if lease.users == 0:
            self._retire(lease)
            lease.connection.close()


class ConnectionPools:
    """A worker's pools: SQL and SSH connections, closed together when the worker stops."""

    def __init__(self, limits: PoolLimits | None = None) -> None:
        self.sql = SqlPool(limits)
        self.ssh = SshPool(limits)

    async def close(self) -> None:
        await asyncio.to_thread(self.sql.close)
        await self.ssh.close()
