"""Simulated hosts: an SSH server per host, running real commands in a per-host root.

Each host has a directory tree like an OceanBase machine's (`home/admin/oceanbase/{bin,etc,store,log}`)
and one real `observer` process per server on it: a small program started from the host's install
directory that owns the server's SQL port (it relays connections to the simulator's endpoint), so
`ss`, `ps` and `/proc` on the "host" show what they would show on a real one. Commands arrive over
real SSH (asyncssh) and run with `bash -c`, with their real output and exit codes.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from obsim.cluster import ServerSpec
from obsim.network import Endpoint, Network, Relay

SSH_USER = "admin"

_OBSERVER = '''#!{python}
"""A simulated observer: owns the server's SQL port and relays connections to the simulator.

SIGUSR1 partitions it from new clients (their connects time out, as towards an unreachable host);
SIGUSR2 ends the partition."""
import asyncio, os, signal, socket, sys

args = sys.argv[1:]
opts = dict(zip(args[::2], args[1::2]))
ip, port, upstream = opts["-I"], int(opts["-p"]), opts["--relay"]
parent = os.getppid()
BACKLOG = 128
tasks = set()


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(client):
    try:
        client_reader, client_writer = await asyncio.open_connection(sock=client)
    except OSError:
        client.close()
        return
    try:
        reader, writer = await asyncio.open_unix_connection(upstream)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))


class Listener:
    def __init__(self, loop):
        self.loop = loop
        self.sock = socket.create_server((ip, port), backlog=BACKLOG)
        self.sock.setblocking(False)
        self.plug = None
        loop.add_reader(self.sock.fileno(), self.accept)

    def accept(self, skip=None):
        while True:
            try:
                client, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            if peer == skip:
                client.close()
                continue
            task = self.loop.create_task(serve(client))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def hold(self):
        if self.plug is None:
            self.loop.remove_reader(self.sock.fileno())
            # A zero backlog is full with one queued connection (this plug): the kernel drops new SYNs.
            self.sock.listen(0)
            self.plug = socket.socket()
            self.plug.setblocking(False)
            self.plug.connect_ex((ip, port))

    def release(self):
        if self.plug is not None:
            plug = self.plug.getsockname()
            self.plug.close()
            self.plug = None
            self.sock.listen(BACKLOG)
            self.accept(skip=plug)
            self.loop.add_reader(self.sock.fileno(), self.accept)


async def main():
    loop = asyncio.get_running_loop()
    listener = Listener(loop)
    loop.add_signal_handler(signal.SIGUSR1, listener.hold)
    loop.add_signal_handler(signal.SIGUSR2, listener.release)
    os.makedirs("log", exist_ok=True)
    with open("run/observer.pid", "w") as handle:
        handle.write(str(os.getpid()))
    while os.getppid() == parent:
        await asyncio.sleep(0.5)


asyncio.run(main())
'''


@dataclass
class SimHost:
    address: str
    root: Path
    servers: list[ServerSpec]
    host_key: asyncssh.SSHKey = field(repr=False)

    @property
    def home(self) -> Path:
        return self.root / "home" / SSH_USER

    @property
    def install_dir(self) -> Path:
        return self.home / "oceanbase"


class SimHosts:
    """The running hosts: SSH servers and observer processes; `close()` stops them all."""

    def __init__(self, base: Path, owns_base: bool) -> None:
        self.base = base
        self._owns_base = owns_base
        self.hosts: list[SimHost] = []
        self.client_key_file = base / "client_key"
        self.known_hosts_file = base / "known_hosts"
        self.password: str | None = None
        self.ssh_port = 0
        self.network = Network()
        self.authorized: asyncssh.SSHAuthorizedKeys | None = None
        self._ssh_servers: list[asyncssh.SSHAcceptor] = []
        self._relays: list[Relay] = []
        self._observers: list[asyncio.subprocess.Process] = []

    def client_info(self) -> dict[str, Any]:
        return {
            "username": SSH_USER,
            "private_key_file": str(self.client_key_file),
            "known_hosts": str(self.known_hosts_file),
        }

    async def start_host(self, address: str) -> SimHost:
        """A host at `address`: its directory tree and its SSH server (no observer yet)."""
        network = self.network
        host = SimHost(address, self.base / address, [], _kept_key(self.base / f"{address}.host_key"))
        _layout(host)
        self.hosts.append(host)

        def factory(process: asyncssh.SSHServerProcess[bytes], host: SimHost = host) -> Any:
            return _run_command(host, network, process)

        endpoint = network.endpoint("ssh", address, self.ssh_port)
        acceptor = await asyncssh.create_server(
            functools.partial(_HostSSHServer, self, endpoint),
            "127.0.0.1" if network.relayed else address,
            0 if network.relayed else self.ssh_port,
            server_host_keys=[host.host_key],
            authorized_client_keys=self.authorized,
            process_factory=factory,
            encoding=None,
        )
        self._ssh_servers.append(acceptor)
        if network.relayed:
            relay = await network.relay(endpoint, (address, self.ssh_port), ("127.0.0.1", acceptor.get_port()))
            self._relays.append(relay)
        return host

    async def start_observer(self, host: SimHost, server: ServerSpec, relay: str) -> None:
        """The server's observer process on `host`, owning its SQL port and relaying to `relay`."""
        process = await asyncio.create_subprocess_exec(
            str(host.install_dir / "bin" / "observer"),
            "-I", server.ip, "-p", str(server.sql_port), "-P", str(server.rpc_port), "-z", server.zone,
            "-d", str(host.install_dir / "store"), "--relay", relay,
            cwd=host.install_dir,
            stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self._observers.append(process)
        self.network.endpoint("sql", server.ip, server.sql_port).holders.append(
            functools.partial(_hold_observer, process)
        )

    async def join(self, server: ServerSpec, relay: str | None) -> SimHost:
        """A server that joins the cluster after the start: its host (started, and its key added to the
        known_hosts file, unless the address has a host already) and, with `relay`, its observer process."""
        host = next((h for h in self.hosts if h.address == server.ip), None)
        if host is None:
            host = await self.start_host(server.ip)
            with self.known_hosts_file.open("a") as known:
                known.write(_known_hosts_line(host, self.ssh_port))
        host.servers.append(server)
        if relay is not None:
            await self.start_observer(host, server, relay)
            await _wait_listening([(server.ip, server.sql_port)])
        return host

    async def close(self) -> None:
        for relay in self._relays:
            await relay.close()
        for server in self._ssh_servers:
            server.close()
        for process in self._observers:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self._observers:
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
        if self._owns_base:
            shutil.rmtree(self.base, ignore_errors=True)


def _layout(host: SimHost) -> None:
    for sub in ("bin", "etc", "store", "log", "run", "lib"):
        (host.install_dir / sub).mkdir(parents=True, exist_ok=True)
    (host.root / "usr" / "local" / "bin").mkdir(parents=True, exist_ok=True)
    observer = host.install_dir / "bin" / "observer"
    observer.write_text(_OBSERVER.format(python=sys.executable))
    observer.chmod(0o755)


class _HostSSHServer(asyncssh.SSHServer):
    def __init__(self, hosts: SimHosts, endpoint: Endpoint) -> None:
        self._hosts = hosts
        self._endpoint = endpoint

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._endpoint.accepted()

    def connection_lost(self, exc: Exception | None) -> None:
        self._endpoint.closed()

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return self._hosts.password is not None

    def validate_password(self, username: str, password: str) -> bool:
        return username == SSH_USER and password == self._hosts.password

    def public_key_auth_supported(self) -> bool:
        return True


async def _run_command(host: SimHost, network: Network, process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Run the client's command with bash in the host's home: its stdin, output and exit status."""
    command = process.command or "bash -l"
    # A slow host (set through the control API): every command starts late.
    await asyncio.sleep(network.command_delay(host.address))
    environment = {
        "HOME": str(host.home),
        "USER": SSH_USER,
        "LOGNAME": SSH_USER,
        "PATH": f"{host.root}/usr/local/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "OBSIM_HOST_ROOT": str(host.root),
    }
    local = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        cwd=host.home,
        env=environment,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    # The client sends its input and then EOF; output is relayed once the command has ended, so
    # none of it can be lost to the exit status arriving first.
    await process.redirect(stdin=local.stdin)
    stdout, stderr = await asyncio.gather(local.stdout.read(), local.stderr.read())  # type: ignore[union-attr]
    await local.wait()
    process.stdout.write(stdout)
    process.stderr.write(stderr)
    process.exit(local.returncode if local.returncode is not None else 255)
    # Runs asyncssh's clean-up of the stdin redirection, which otherwise is never awaited.
    await process.wait_closed()


def _kept_key(path: Path) -> asyncssh.SSHKey:
    """The ed25519 key in `path`, made (0600, with its .pub) the first time."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    os.chmod(path, 0o600)
    key.write_public_key(str(path) + ".pub")
    return key


async def start_hosts(
    servers: list[ServerSpec],
    ssh_port: int,
    hosts_dir: Path | None,
    sql_port: int,
    *,
    relays: dict[str, str] | None = None,
    password: str | None = None,
    network: Network | None = None,
) -> SimHosts:
    """Start one SSH server per distinct server address, and each server's observer process.

    `relays` maps a server label (ip:rpc_port) to the unix socket its observer relays to. Under
    `network`'s conditions each SSH server listens on an internal port behind a relay on the host's.
    """
    network = network or Network()
    owns = hosts_dir is None
    base = Path(tempfile.mkdtemp(prefix="obsim-hosts-")) if hosts_dir is None else hosts_dir
    base.mkdir(parents=True, exist_ok=True)
    hosts = SimHosts(base, owns)
    hosts.password = password
    hosts.ssh_port = ssh_port
    hosts.network = network
    # Kept across restarts with the same --hosts-dir, so a credential registered with it keeps working.
    client_key = _kept_key(hosts.client_key_file)
    hosts.authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())

    by_address: dict[str, list[ServerSpec]] = {}
    for server in servers:
        by_address.setdefault(server.ip, []).append(server)
    for address, on_host in by_address.items():
        host = await hosts.start_host(address)
        for server in on_host:
            host.servers.append(server)
            if relays is not None:
                await hosts.start_observer(host, server, relays[server.label])
    hosts.known_hosts_file.write_text("".join(_known_hosts_line(h, ssh_port) for h in hosts.hosts))
    if relays is not None:
        await _wait_listening([(s.ip, s.sql_port) for s in servers])
    return hosts


def _known_hosts_line(host: SimHost, ssh_port: int) -> str:
    return f"[{host.address}]:{ssh_port} {host.host_key.export_public_key().decode().strip()}\n"


def _hold_observer(process: asyncio.subprocess.Process, held: bool) -> None:
    """Partition an observer's SQL port from new clients, or end that (see its script)."""
    if process.returncode is None:
        process.send_signal(signal.SIGUSR1 if held else signal.SIGUSR2)


async def _wait_listening(endpoints: list[tuple[str, int]], timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for ip, port in endpoints:
        while True:
            try:
                _, writer = await asyncio.open_connection(ip, port)
                writer.close()
                break
            except OSError:
                if loop.time() > deadline:
                    raise OSError(f"observer on {ip}:{port} did not start") from None
                await asyncio.sleep(0.05)
