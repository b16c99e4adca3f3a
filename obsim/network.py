"""Network conditions for the simulator's endpoints, where the kernel offers no `netem`.

With latency, jitter or `--network`, every public endpoint (a server's SQL port, a host's SSH port, the
proxy) is a relay in front of the real server, which then listens on an internal loopback port. The relay
delays every chunk by the one-way latency in each direction, in order, and lets a new connection reach the
server only after the three one-way trips of a TCP handshake. It partitions an endpoint (new connections
time out in the kernel, open ones stall until it heals) and cuts its open connections with a reset.
Without any of those options there is no relay: the servers listen on the public addresses themselves.

Every endpoint counts the connections its real server accepted, relay or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import stat
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

KINDS = ("sql", "ssh", "proxy")
# The name that selects the proxy's endpoint, as the login and statement logs name it.
PROXY = "proxy"
BACKLOG = 128
_CHUNK = 65536
# SO_LINGER on, with a zero timeout: close() sends a reset instead of a FIN.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class NetworkConditions:
    """The one-way delay of every chunk on every relayed connection: latency ± jitter (uniform)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int | None = None

    def one_way(self, rng: random.Random) -> float:
        """One chunk's one-way delay in seconds, never below zero."""
        jitter = rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        return max(0.0, self.latency_ms + jitter) / 1000


@dataclass(eq=False)
class Endpoint:
    """One public endpoint: its kind (sql, ssh, proxy), where it listens, its connections, its partition."""

    kind: str
    address: str
    port: int
    opened: int = 0
    open: int = 0
    partitioned_until: float | None = None
    # Called with True when a partition begins and False when it heals: whatever accepts this
    # endpoint's connections (a relay, an observer process) stops and resumes accepting.
    holders: list[Callable[[bool], None]] = field(default_factory=list)
    relayed: set[RelayedConnection] = field(default_factory=set)
    reachable: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.reachable.set()

    @property
    def name(self) -> str:
        return f"{self.address}:{self.port}"

    def accepted(self) -> None:
        """The real server accepted a connection."""
        self.opened += 1
        self.open += 1

    def closed(self) -> None:
        self.open -= 1

    @contextlib.contextmanager
    def connection(self) -> Iterator[None]:
        """Count one connection of the real server for as long as it is open."""
        self.accepted()
        try:
            yield
        finally:
            self.closed()


def select_endpoints(endpoints: list[Endpoint], spec: str) -> list[Endpoint]:
    """The endpoints `spec` names: "ADDRESS:PORT" (one endpoint), "host:ADDRESS" (every endpoint on that
    address: its SSH port and its servers' SQL ports) or "proxy". ValueError when it names none."""
    if spec == PROXY:
        found = [e for e in endpoints if e.kind == PROXY]
    elif spec.startswith("host:"):
        found = [e for e in endpoints if e.address == spec.removeprefix("host:")]
    else:
        found = [e for e in endpoints if e.name == spec]
    if not found:
        known = ", ".join(sorted(e.name for e in endpoints)) or "none"
        raise ValueError(f"no endpoint {spec!r} (ADDRESS:PORT, host:ADDRESS or proxy; endpoints: {known})")
    return found


class Network:
    """The simulator's network: its conditions, its endpoints and the faults set on them at run time."""

    def __init__(self, conditions: NetworkConditions | None = None, *, relay: bool = False) -> None:
        self.conditions = conditions or NetworkConditions()
        self.relayed = relay or self.conditions.latency_ms > 0 or self.conditions.jitter_ms > 0
        self._rng = random.Random(self.conditions.seed)
        self._endpoints: list[Endpoint] = []
        self._heals: dict[Endpoint, asyncio.TimerHandle] = {}
        self._slow_commands: dict[str, float] = {}

    def endpoint(self, kind: str, address: str, port: int) -> Endpoint:
        """The endpoint listening on `address`:`port`, registered the first time it is asked for."""
        for endpoint in self._endpoints:
            if (endpoint.address, endpoint.port) == (address, port) and port:
                return endpoint
        endpoint = Endpoint(kind, address, port)
        self._endpoints.append(endpoint)
        return endpoint

    def delay(self) -> float:
        """One chunk's one-way delay in seconds."""
        return self.conditions.one_way(self._rng)

    def select(self, spec: str) -> list[Endpoint]:
        return select_endpoints(self._endpoints, spec)

    def partition(self, spec: str, seconds: float) -> list[Endpoint]:
        """Make the endpoints `spec` names unreachable for `seconds` (longer if they already are)."""
        endpoints = self.select(spec)
        now = time.monotonic()
        loop = asyncio.get_running_loop()
        for endpoint in endpoints:
            until = max(endpoint.partitioned_until or now, now + seconds)
            if endpoint.partitioned_until is None:
                endpoint.reachable.clear()
                for hold in endpoint.holders:
                    hold(True)
            endpoint.partitioned_until = until
            if endpoint in self._heals:
                self._heals[endpoint].cancel()
            self._heals[endpoint] = loop.call_later(until - now, self._heal, endpoint)
        return endpoints

    def heal(self) -> int:
        """End every partition now; how many endpoints were partitioned."""
        partitioned = [e for e in self._endpoints if e.partitioned_until is not None]
        for endpoint in partitioned:
            self._heal(endpoint)
        return len(partitioned)

    def _heal(self, endpoint: Endpoint) -> None:
        handle = self._heals.pop(endpoint, None)
        if handle is not None:
            handle.cancel()
        if endpoint.partitioned_until is None:
            return
        endpoint.partitioned_until = None
        endpoint.reachable.set()
        for hold in endpoint.holders:
            hold(False)

    def cut(self, spec: str) -> int:
        """Reset every open connection of the endpoints `spec` names; how many there were."""
        connections = [c for endpoint in self.select(spec) for c in list(endpoint.relayed)]
        for connection in connections:
            connection.abort()
        return len(connections)

    @property
    def hosts(self) -> list[str]:
        """The addresses with an SSH endpoint."""
        return sorted({e.address for e in self._endpoints if e.kind == "ssh"})

    def slow_commands(self, host: str, seconds: float) -> None:
        """Delay the start of every command on `host` by `seconds` (0: no longer)."""
        if host not in self.hosts:
            raise ValueError(f"no host {host!r} (hosts: {', '.join(self.hosts) or 'none'})")
        if seconds > 0:
            self._slow_commands[host] = seconds
        else:
            self._slow_commands.pop(host, None)

    def command_delay(self, host: str) -> float:
        return self._slow_commands.get(host, 0.0)

    def state(self) -> dict[str, Any]:
        """Conditions, partitions, slow commands and connection counts, as the control API shows them."""
        now = time.monotonic()

        def left(endpoint: Endpoint) -> float:
            return round(max(0.0, (endpoint.partitioned_until or now) - now), 3)

        return {
            "conditions": {
                "latency_ms": self.conditions.latency_ms,
                "jitter_ms": self.conditions.jitter_ms,
                "relayed": self.relayed,
            },
            "partitions": {e.name: left(e) for e in self._endpoints if e.partitioned_until is not None},
            "slow_commands": dict(sorted(self._slow_commands.items())),
            "connections_opened": {kind: sum(e.opened for e in self._endpoints if e.kind == kind) for kind in KINDS},
            "connections_open": {kind: sum(e.open for e in self._endpoints if e.kind == kind) for kind in KINDS},
            "endpoints": {
                e.name: {"kind": e.kind, "host": e.address, "opened": e.opened, "open": e.open} for e in self._endpoints
            },
        }

    async def relay(self, endpoint: Endpoint, listen: tuple[str, int] | str, upstream: tuple[str, int]) -> Relay:
        """Listen on `listen` (address and port, or a unix socket path) for `endpoint` and relay each
        connection to the real server at `upstream` under this network's conditions."""
        if isinstance(listen, str):
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(listen).st_mode):
                    os.unlink(listen)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(listen)
            listener.listen(BACKLOG)
        else:
            listener = socket.create_server(listen, backlog=BACKLOG)
        listener.setblocking(False)
        relay = Relay(self, endpoint, listener, upstream)
        if not endpoint.port:
            endpoint.port = relay.port
        return relay

    def close(self) -> None:
        for handle in self._heals.values():
            handle.cancel()
        self._heals.clear()


class Relay:
    """A listening socket whose connections reach the real server through the network's conditions."""

    def __init__(self, network: Network, endpoint: Endpoint, listener: socket.socket, upstream: tuple[str, int]):
        self._network = network
        self._endpoint = endpoint
        self._listener = listener
        self._upstream = upstream
        self._loop = asyncio.get_running_loop()
        self._plug: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop.add_reader(listener.fileno(), self._accept)
        endpoint.holders.append(self._hold)

    @property
    def port(self) -> int:
        address = self._listener.getsockname()
        return int(address[1]) if isinstance(address, tuple) else 0

    def _accept(self, skip: Any = None) -> None:
        while True:
            try:
                client, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            if skip is not None and peer == skip:
                client.close()
                continue
            connection = RelayedConnection(self._network, self._endpoint, client, self._upstream)
            task = self._loop.create_task(connection.run())
            connection.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _hold(self, held: bool) -> None:
        if held:
            self._loop.remove_reader(self._listener.fileno())
            if self._listener.family != socket.AF_UNIX:
                # A full accept queue makes the kernel drop SYNs, so connects time out as they do
                # towards an unreachable host: a zero backlog is full with one connection, this plug.
                self._listener.listen(0)
                self._plug = socket.socket(self._listener.family, socket.SOCK_STREAM)
                self._plug.setblocking(False)
                self._plug.connect_ex(self._listener.getsockname())
            return
        plug = None
        if self._plug is not None:
            plug = self._plug.getsockname()
            self._plug.close()
            self._plug = None
            self._listener.listen(BACKLOG)
        self._accept(skip=plug)
        self._loop.add_reader(self._listener.fileno(), self._accept)

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        with contextlib.suppress(ValueError):
            self._endpoint.holders.remove(self._hold)
        self._loop.remove_reader(self._listener.fileno())
        self._listener.close()
        if self._plug is not None:
            self._plug.close()
        for connection in list(self._endpoint.relayed):
            connection.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class RelayedConnection:
    """One client's connection through a relay: each direction's chunks leave in order, each one its
    one-way delay after it arrived, so a chunk that arrives while another waits is not delayed twice."""

    def __init__(self, network: Network, endpoint: Endpoint, client: socket.socket, upstream: tuple[str, int]):
        self._network = network
        self._endpoint = endpoint
        self._client = client
        self._upstream = upstream
        self._writers: list[asyncio.StreamWriter] = []
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # SYN, SYN/ACK, ACK: the server accepts three one-way trips after the client's SYN. The
        # client's first bytes (sent on connect, a round trip early) wait for that too.
        accept_at = loop.time() + sum(self._network.delay() for _ in range(3))
        self._endpoint.relayed.add(self)
        tasks: list[asyncio.Task[None]] = []
        try:
            client_reader, client_writer = await asyncio.open_connection(sock=self._client)
            self._writers.append(client_writer)
            to_server: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
            tasks.append(asyncio.create_task(self._read(client_reader, to_server)))
            await self._wait(accept_at)
            server_reader, server_writer = await asyncio.open_connection(*self._upstream)
            self._writers.append(server_writer)
            to_client: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
            tasks.append(asyncio.create_task(self._read(server_reader, to_client)))
            tasks.append(asyncio.create_task(self._write(to_server, server_writer)))
            tasks.append(asyncio.create_task(self._write(to_client, client_writer)))
            await asyncio.gather(*tasks)
        except OSError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            self._endpoint.relayed.discard(self)
            for writer in self._writers:
                writer.close()
            if not self._writers:
                self._client.close()

    async def _wait(self, moment: float) -> None:
        """Until `moment` (loop time) and while the endpoint is partitioned."""
        await asyncio.sleep(max(0.0, moment - asyncio.get_running_loop().time()))
        await self._endpoint.reachable.wait()

    async def _read(self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        loop = asyncio.get_running_loop()
        released = 0.0
        while True:
            try:
                data = await reader.read(_CHUNK)
            except OSError:
                data = b""
            released = max(loop.time() + self._network.delay(), released)
            queue.put_nowait((released, data))
            if not data:
                return

    async def _write(self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        while True:
            release, data = await queue.get()
            await self._wait(release)
            if not data:
                # The peer closed its side: pass the FIN on and keep the other direction open.
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    def abort(self) -> None:
        """Cut the connection: the client gets a reset, the server sees its peer vanish."""
        with contextlib.suppress(OSError):
            self._client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        for writer in self._writers:
            writer.transport.abort()
        if self.task is not None:
            self.task.cancel()
