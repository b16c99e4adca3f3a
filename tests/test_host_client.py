"""`HostClient` against the simulated hosts over real SSH: each failure has its own clear error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

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
