"""`HostClient` against the simulated hosts over real SSH: each failure has its own clear error; with the
worker's pool, sessions on a host share one connection, and a failure or a changed key is never hidden."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import asyncssh
import pytest

from activities.connections import PoolLimits, SshPool
from activities.host_client import HostClient
from activities.ports import HostKeyCheck, HostLogin
from contracts.errors import HostAuthFailed, HostCommandFailed, HostKeyMismatch, HostUnreachable
from metadb.credentials import Credential
from tests.support.mariadb import free_port
from tests.support.simulator import Simulation, simulation

SSH_PASSWORD = "ssh-Pa$$'w0rd"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    directory = tmp_path_factory.mktemp("hosts")
    (directory / "ssh_password").write_text(SSH_PASSWORD)
    with simulation(
        directory, zones=1, servers_per_zone=1, extra=["--ssh-password-file", str(directory / "ssh_password")]
    ) as running:
        yield running


def password(secret: str) -> Credential:
    return Credential(id=1, kind="HOST", name="pw", username="admin", secret_type="password", secret=secret)


def key_credential(sim: Simulation) -> Credential:
    text = Path(sim.ready["ssh"]["private_key_file"]).read_text()
    return Credential(id=2, kind="HOST", name="key", username="admin", secret_type="private_key", secret=text)


def known(sim: Simulation) -> HostKeyCheck:
    return HostKeyCheck(known_hosts=sim.ready["ssh"]["known_hosts"])


async def test_password_and_key_logins_run_real_commands(sim: Simulation) -> None:
    for credential in (password(SSH_PASSWORD), key_credential(sim)):
        async with HostClient(HostLogin(sim.address, sim.ssh_port, credential, known(sim))) as client:
            result = await client.run("echo $HOME; cat; exit 0", input="from stdin")
            assert result.stdout == f"{sim.host_root(sim.address)}/home/admin\nfrom stdin"
            failed = await client.run("echo oops >&2; exit 7", check=False)
            assert failed.exit_status == 7 and failed.stderr == "oops\n"
            with pytest.raises(HostCommandFailed, match=r"exited with 7: oops"):
                await client.run("echo oops >&2; exit 7")


async def test_wrong_password_is_an_auth_error(sim: Simulation) -> None:
    with pytest.raises(HostAuthFailed, match="SSH login as admin refused; check credential 1"):
        async with HostClient(HostLogin(sim.address, sim.ssh_port, password("wrong"), known(sim))):
            pass


async def test_changed_host_key_is_refused(sim: Simulation, tmp_path: Path) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{sim.address}]:{sim.ssh_port} {stranger}\n")
    with pytest.raises(HostKeyMismatch, match="does not match the known key"):
        async with HostClient(
            HostLogin(sim.address, sim.ssh_port, key_credential(sim), HostKeyCheck(known_hosts=str(known_hosts)))
        ):
            pass


async def test_trust_on_first_use_records_then_enforces(sim: Simulation) -> None:
    recorded: list[str] = []
    tofu = HostKeyCheck(trust_on_first_use=True)
    async with HostClient(
        HostLogin(sim.address, sim.ssh_port, key_credential(sim), tofu, on_new_host_key=recorded.append)
    ):
        pass
    assert len(recorded) == 1 and recorded[0].startswith("ssh-ed25519 ")
    again = HostKeyCheck(trust_on_first_use=True, recorded_key=recorded[0])
    async with HostClient(HostLogin(sim.address, sim.ssh_port, key_credential(sim), again)):
        pass
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    changed = HostKeyCheck(trust_on_first_use=True, recorded_key=other)
    with pytest.raises(HostKeyMismatch):
        async with HostClient(HostLogin(sim.address, sim.ssh_port, key_credential(sim), changed)):
            pass


async def test_unreachable_host_is_transient(sim: Simulation) -> None:
    with pytest.raises(HostUnreachable, match="cannot reach SSH") as info:
        async with HostClient(HostLogin("127.0.0.1", free_port(), key_credential(sim), known(sim), connect_timeout=3)):
            pass
    assert info.value.retryable


async def test_bad_private_key_is_named_without_its_content(sim: Simulation) -> None:
    broken = Credential(id=3, kind="HOST", name="k", username="admin", secret_type="private_key", secret="garbage-key")
    with pytest.raises(HostAuthFailed, match="credential 3's private key cannot be read") as info:
        async with HostClient(HostLogin(sim.address, sim.ssh_port, broken, known(sim))):
            pass
    assert "garbage-key" not in str(info.value)


async def test_no_ssh_agent_and_no_ssh_config_unless_asked(
    sim: Simulation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's own SSH agent and ~/.ssh/config stay out of host logins: the agent is never asked for
    keys, and a config that sends every host elsewhere changes nothing."""
    import socket
    import threading

    agent_asked: list[bool] = []
    agent = socket.socket(socket.AF_UNIX)
    agent.bind(str(tmp_path / "agent.sock"))
    agent.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = agent.accept()
            except OSError:
                return
            agent_asked.append(True)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(f"Host *\n    Hostname 127.0.0.254\n    Port {free_port()}\n")
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    monkeypatch.setenv("HOME", str(tmp_path))
    try:
        async with HostClient(HostLogin(sim.address, sim.ssh_port, key_credential(sim), known(sim))) as client:
            assert (await client.run("echo ok")).stdout == "ok\n"
        assert agent_asked == []
        # Asked for: the agent is offered and the config applies (here: it sends the login nowhere).
        asked = HostLogin(
            sim.address, sim.ssh_port, key_credential(sim), known(sim), connect_timeout=3,
            ssh_agent=True, ssh_config_file=str(tmp_path / ".ssh" / "config"),
        )  # fmt: skip
        with pytest.raises(HostUnreachable):
            async with HostClient(asked):
                pass
    finally:
        agent.close()


# --- the worker's pool: one connection per host and login -------------------------------------------------


@pytest.fixture
async def pool() -> AsyncIterator[SshPool]:
    pool = SshPool()
    yield pool
    await pool.close()


def ssh_opened(sim: Simulation) -> int:
    endpoint: dict[str, int] = sim.call("GET", "/network")["endpoints"][f"{sim.address}:{sim.ssh_port}"]
    return endpoint["opened"]


def key_login(sim: Simulation, keys: HostKeyCheck | None = None) -> HostLogin:
    return HostLogin(sim.address, sim.ssh_port, key_credential(sim), keys or known(sim))


async def test_sessions_on_a_host_share_one_connection(sim: Simulation, pool: SshPool) -> None:
    before = ssh_opened(sim)
    for n in range(3):
        async with HostClient(key_login(sim), pool=pool) as client:
            assert (await client.run(f"echo {n}")).stdout == f"{n}\n"

    async def session(tag: str) -> list[str]:
        async with HostClient(key_login(sim), pool=pool) as client:
            results = await asyncio.gather(*(client.run(f"echo {tag}{i}") for i in range(10)))
            return [r.stdout for r in results]

    both = await asyncio.gather(session("a"), session("b"))
    assert list(both) == [[f"{tag}{i}\n" for i in range(10)] for tag in "ab"]
    assert ssh_opened(sim) - before == 1 and pool.open_count() == 1


async def test_commands_beyond_the_channel_cap_wait_for_a_channel(sim: Simulation) -> None:
    pool = SshPool(PoolLimits(max_channels=2))
    try:
        async with HostClient(key_login(sim), pool=pool) as client:
            began = time.monotonic()
            await asyncio.gather(*(client.run("sleep 0.3") for _ in range(6)))
            # Two at a time: three waves of 0.3 s.
            assert time.monotonic() - began >= 0.9
    finally:
        await pool.close()


async def test_a_session_that_fails_or_is_cancelled_retires_its_connection(sim: Simulation, pool: SshPool) -> None:
    before = ssh_opened(sim)
    with pytest.raises(HostCommandFailed):
        async with HostClient(key_login(sim), pool=pool) as client:
            await client.run("exit 3")
    assert pool.open_count() == 0

    async def long_command() -> None:
        async with HostClient(key_login(sim), pool=pool) as client:
            await client.run("sleep 30")

    running = asyncio.ensure_future(long_command())
    await asyncio.sleep(0.5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert pool.open_count() == 0
    async with HostClient(key_login(sim), pool=pool) as client:
        await client.run("true")
    assert ssh_opened(sim) - before == 3


async def test_a_changed_host_key_is_refused_on_a_new_connection(
    sim: Simulation, pool: SshPool, tmp_path: Path
) -> None:
    """A pooled connection never stands in for a check: once the known key changes, the next session
    connects anew and is refused, though a connection verified against the old key is still open."""
    known_hosts = tmp_path / "known_hosts"
    right = Path(sim.ready["ssh"]["known_hosts"]).read_text()
    known_hosts.write_text(right)
    keys = HostKeyCheck(known_hosts=str(known_hosts))
    async with HostClient(key_login(sim, keys), pool=pool):
        pass
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known_hosts.write_text(f"[{sim.address}]:{sim.ssh_port} {stranger}\n")
    with pytest.raises(HostKeyMismatch):
        async with HostClient(key_login(sim, keys), pool=pool):
            pass
    # Trust on first use: the recorded key must be the one the pooled connection's server showed.
    recorded: list[str] = []
    first = HostLogin(
        sim.address,
        sim.ssh_port,
        key_credential(sim),
        HostKeyCheck(trust_on_first_use=True),
        on_new_host_key=recorded.append,
    )
    async with HostClient(first, pool=pool):
        pass
    before = ssh_opened(sim)
    recorded_keys = HostKeyCheck(trust_on_first_use=True, recorded_key=recorded[0])
    async with HostClient(key_login(sim, recorded_keys), pool=pool):
        pass
    assert ssh_opened(sim) == before
    with pytest.raises(HostKeyMismatch):
        async with HostClient(key_login(sim, HostKeyCheck(trust_on_first_use=True, recorded_key=stranger)), pool=pool):
            pass
    assert ssh_opened(sim) == before + 1


async def test_idle_connections_are_closed(sim: Simulation) -> None:
    pool = SshPool(PoolLimits(idle_timeout=0.2))
    try:
        async with HostClient(key_login(sim), pool=pool):
            pass
        assert pool.open_count() == 1
        await asyncio.sleep(0.6)
        assert pool.open_count() == 0
    finally:
        await pool.close()


async def test_keys_are_imported_once_and_known_hosts_read_again_when_changed(sim: Simulation, tmp_path: Path) -> None:
    pool = SshPool()
    secret = key_credential(sim).secret
    assert pool.private_key(secret, None) is pool.private_key(secret, None)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(Path(sim.ready["ssh"]["known_hosts"]).read_text())
    parsed = pool.known_hosts(str(known_hosts))
    assert pool.known_hosts(str(known_hosts)) is parsed
    known_hosts.write_text(known_hosts.read_text() + "\n")
    assert pool.known_hosts(str(known_hosts)) is not parsed


class StandInConnection:
    def __init__(self) -> None:
        self.closed = False

    def get_server_host_key(self) -> None:
        return None

    def is_closed(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None


@pytest.mark.unit
async def test_a_failed_connect_is_not_remembered_and_parallel_sessions_share_one_connect() -> None:
    pool = SshPool()
    attempts: list[int] = []

    async def connect() -> asyncssh.SSHClientConnection:
        attempts.append(1)
        await asyncio.sleep(0.05)
        if len(attempts) == 1:
            raise HostUnreachable("cannot reach SSH", node="h")
        return cast(asyncssh.SSHClientConnection, StandInConnection())

    with pytest.raises(HostUnreachable):
        await pool.lease("key", connect)
    leases = await asyncio.gather(*(pool.lease("key", connect) for _ in range(5)))
    assert len(attempts) == 2 and len({id(lease.connection) for lease in leases}) == 1
    for lease in leases[:-1]:
        await pool.release(lease, failed=False)
    await pool.release(leases[-1], failed=True)
    assert cast(StandInConnection, leases[0].connection).closed and pool.open_count() == 0
    await pool.close()
