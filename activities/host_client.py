"""`HostClient`: commands on a cluster's host over SSH (asyncssh), with the project's errors.

Logins use a credential from the password box (password, or private key with passphrase). Host
keys are checked against a known_hosts file, or, in trust-on-first-use mode, against the key the
metadb recorded at first contact. Output is captured up to a bound; errors name the host and say
what to do; secrets never appear in what is logged.

With a pool (`activities.connections.SshPool`), a session uses the worker's connection to the host for
the same login and host-key policy, opening (and verifying) one only when there is none; a session that
ends with an error or a cancellation, or whose command timed out, retires its connection.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Hashable

import asyncssh
from opentelemetry import trace

from activities.connections import SshLease, SshPool, file_signature, secret_digest
from activities.ports import CommandResult, HostLogin
from contracts.errors import HostAuthFailed, HostCommandFailed, HostKeyMismatch, HostKeysUnknown, HostUnreachable

MAX_OUTPUT = 1 << 20
_tracer = trace.get_tracer("ob_takeover.ssh")


class HostClient:
    """An SSH session to one host; use with `async with`. With `pool`, the session borrows the worker's
    connection to the host (and gives it back on exit) instead of opening its own."""

    def __init__(self, login: HostLogin, *, command_timeout: float = 120.0, pool: SshPool | None = None) -> None:
        self.address = login.address
        self.port = login.port
        self._credential = login.credential
        self._keys = login.keys
        self._connect_timeout = login.connect_timeout
        self._command_timeout = command_timeout
        self._on_new_host_key = login.on_new_host_key
        self._ssh_agent = login.ssh_agent
        self._ssh_config_file = login.ssh_config_file
        self._pool = pool
        self._connection: asyncssh.SSHClientConnection | None = None
        self._lease: SshLease | None = None
        # A command that timed out or lost its channel leaves the connection in doubt.
        self._broken = False

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    def pool_key(self) -> Hashable:
        """What a pooled connection must share to serve this session: address, login, credential (as a
        digest), the worker's agent and config options and the host-key policy (for known_hosts, the file as
        it is now: a changed file is verified again on a new connection). In trust-on-first-use mode a pooled
        connection also has to show the recorded key (`_accepts`)."""
        credential = self._credential
        if self._keys.trust_on_first_use:
            policy: tuple[object, ...] = ("tofu",)
        else:
            policy = ("known_hosts", self._keys.known_hosts, file_signature(self._keys.known_hosts))
        return (
            self.address,
            self.port,
            credential.username,
            credential.id,
            secret_digest(credential.secret_type, credential.secret, credential.passphrase),
            self._ssh_agent,
            self._ssh_config_file,
            policy,
        )

    def _accepts(self, lease: SshLease) -> bool:
        """Whether a pooled connection may serve this session: under trust on first use, the key its
        server showed must be the recorded one (any, when none is recorded yet, as a new login would)."""
        recorded = self._keys.recorded_key
        if not self._keys.trust_on_first_use or not recorded:
            return True
        return lease.server_key == " ".join(recorded.split()[:2])

    async def __aenter__(self) -> HostClient:
        self._check_known_hosts_file()
        if self._pool is None:
            self._connection = await self._connect()
        else:
            self._lease = await self._pool.lease(self.pool_key(), self._connect, self._accepts)
            self._connection = self._lease.connection
        self._broken = False
        if self._keys.trust_on_first_use and not self._keys.recorded_key and self._on_new_host_key:
            server_key = self._connection.get_server_host_key()
            try:
                if server_key is not None:
                    self._on_new_host_key(server_key.export_public_key().decode().strip())
            except BaseException:
                # The session never starts: its connection is given back as failed (or closed).
                self._broken = True
                await self.__aexit__(None, None, None)
                raise
        return self

    def _check_known_hosts_file(self) -> None:
        known = self._keys.known_hosts
        if not self._keys.trust_on_first_use and known is not None and not os.path.isfile(known):
            raise HostKeysUnknown(
                f"the known_hosts file {known} does not exist, so the key of {self.where} cannot be checked; "
                "set known_hosts (OB_TAKEOVER_KNOWN_HOSTS; the simulator's READY line names its file) or "
                "host_key_policy tofu",
                node=self.address,
            )

    async def _connect(self) -> asyncssh.SSHClientConnection:
        """A new connection, the host's key verified as the policy says."""
        options: dict[str, object] = {
            "username": self._credential.username,
            "connect_timeout": self._connect_timeout,
            "login_timeout": self._connect_timeout,
            # The credential's own secret only: no agent keys, no ~/.ssh/config, no key files of the worker's
            # user, unless the operator asks (ssh_agent, ssh_config_file).
            "agent_path": os.environ.get("SSH_AUTH_SOCK") if self._ssh_agent else None,
            "config": [self._ssh_config_file] if self._ssh_config_file else None,
        }
        if self._credential.secret_type == "private_key":
            try:
                secret, passphrase = self._credential.secret, self._credential.passphrase
                key = (
                    self._pool.private_key(secret, passphrase)
                    if self._pool is not None
                    else asyncssh.import_private_key(secret, passphrase)
                )
            except (asyncssh.KeyImportError, ValueError) as exc:
                raise HostAuthFailed(
                    f"credential {self._credential.id}'s private key cannot be read ({type(exc).__name__}); "
                    "check the key and its passphrase",
                    node=self.address,
                ) from None
            options.update(client_keys=[key], password=None)
        else:
            options.update(password=self._credential.secret, client_keys=None)
        if self._keys.trust_on_first_use:
            if self._keys.recorded_key:
                recorded = self._keys.recorded_key
                options["known_hosts"] = asyncssh.import_known_hosts(
                    f"[{self.address}]:{self.port} {recorded}\n{self.address} {recorded}\n"
                )
            else:
                options["known_hosts"] = None
        else:
            known = self._keys.known_hosts
            options["known_hosts"] = self._pool.known_hosts(known) if self._pool is not None and known else known
        try:
            return await asyncssh.connect(self.address, self.port, **options)
        except asyncssh.PermissionDenied:
            raise HostAuthFailed(
                f"SSH login as {self._credential.username} refused; check credential {self._credential.id}",
                node=self.address,
            ) from None
        except asyncssh.HostKeyNotVerifiable:
            raise HostKeyMismatch(
                f"host key of {self.where} does not match the known key; if the machine was reinstalled, "
                "update the known_hosts entry (or the recorded key) and retry",
                node=self.address,
            ) from None
        except (OSError, TimeoutError, asyncssh.ConnectionLost, asyncssh.DisconnectError) as exc:
            raise HostUnreachable(
                f"cannot reach SSH at {self.where} ({type(exc).__name__}: {exc}); check the address, "
                "sshPort and network",
                node=self.address,
            ) from None

    async def __aexit__(self, *exc_info: object) -> None:
        connection, lease = self._connection, self._lease
        self._connection = self._lease = None
        if lease is not None and self._pool is not None:
            failed = self._broken or (bool(exc_info) and exc_info[0] is not None)
            await self._pool.release(lease, failed=failed)
        elif connection is not None:
            connection.close()
            await connection.wait_closed()

    async def run(
        self, command: str, *, input: str | None = None, check: bool = True, what: str | None = None
    ) -> CommandResult:
        """Run a shell command; stdin carries secrets so they never appear in a process list. A failure
        names `what` (default: the command's first word) with the last lines of its stderr."""
        assert self._connection is not None, "use HostClient in `async with`"
        program = _program_of(command)
        try:
            # A span per command, named by its program only: arguments and stdin never go into a trace.
            with _tracer.start_as_current_span(f"SSH {program}", attributes={"ssh.program": program}):
                if self._lease is not None:
                    async with self._lease.channels:
                        result = await self._run(command, input)
                else:
                    result = await self._run(command, input)
        except TimeoutError:
            self._broken = True
            raise HostUnreachable(
                f"command did not finish within {self._command_timeout:.0f}s", node=self.address
            ) from None
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError, OSError) as exc:
            self._broken = True
            raise HostUnreachable(f"connection lost during a command ({exc})", node=self.address) from None
        except BaseException:
            self._broken = True
            raise
        stdout = _text(result.stdout)[:MAX_OUTPUT]
        stderr = _text(result.stderr)[:MAX_OUTPUT]
        status = result.exit_status if result.exit_status is not None else -1
        if check and status != 0:
            tail = stderr.strip().splitlines()[-3:]
            what = what or f"command `{(command.split() or [command])[0]}`"
            raise HostCommandFailed(f"{what} exited with {status}: " + " / ".join(tail), node=self.address)
        return CommandResult(status, stdout, stderr)

    async def _run(self, command: str, input: str | None) -> asyncssh.SSHCompletedProcess:
        assert self._connection is not None
        return await asyncio.wait_for(self._connection.run(command, input=input, check=False), self._command_timeout)


def _program_of(command: str) -> str:
    """The first program a shell command runs (`out=$(df …)` → df), for span names."""
    words = re.findall(r"[A-Za-z_][\w.-]*", command.split(";")[0].split("&&")[0].replace("$(", " "))
    skip = {"if", "then", "p", "pid", "out", "disk", "hostname", "case", "in"}
    program = next((word for word in words if word not in skip and "=" not in word), "sh")
    return program if len(program) <= 32 else "sh"


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
