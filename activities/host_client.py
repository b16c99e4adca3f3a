"""`HostClient`: commands on a cluster's host over SSH (asyncssh), with the project's errors.

Logins use a credential from the password box (password, or private key with passphrase). Host
keys are checked against a known_hosts file, or, in trust-on-first-use mode, against the key the
metadb recorded at first contact. Output is captured up to a bound; errors name the host and say
what to do; secrets never appear in what is logged.
"""

from __future__ import annotations

import asyncio
import os
import re

import asyncssh
from opentelemetry import trace

from activities.ports import CommandResult, HostLogin
from contracts.errors import HostAuthFailed, HostCommandFailed, HostKeyMismatch, HostKeysUnknown, HostUnreachable

MAX_OUTPUT = 1 << 20
_tracer = trace.get_tracer("ob_takeover.ssh")


class HostClient:
    """An SSH session to one host; use with `async with`."""

    def __init__(self, login: HostLogin, *, command_timeout: float = 120.0) -> None:
        self.address = login.address
        self.port = login.port
        self._credential = login.credential
        self._keys = login.keys
        self._connect_timeout = login.connect_timeout
        self._command_timeout = command_timeout
        self._on_new_host_key = login.on_new_host_key
        self._ssh_agent = login.ssh_agent
        self._ssh_config_file = login.ssh_config_file
        self._connection: asyncssh.SSHClientConnection | None = None

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    async def __aenter__(self) -> HostClient:
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
                key = asyncssh.import_private_key(self._credential.secret, self._credential.passphrase)
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
            if known is not None and not os.path.isfile(known):
                raise HostKeysUnknown(
                    f"the known_hosts file {known} does not exist, so the key of {self.where} cannot be checked; "
                    "set known_hosts (OB_TAKEOVER_KNOWN_HOSTS; the simulator's READY line names its file) or "
                    "host_key_policy tofu",
                    node=self.address,
                )
            options["known_hosts"] = known
        try:
            self._connection = await asyncssh.connect(self.address, self.port, **options)
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
        if self._keys.trust_on_first_use and not self._keys.recorded_key and self._on_new_host_key:
            server_key = self._connection.get_server_host_key()
            if server_key is not None:
                self._on_new_host_key(server_key.export_public_key().decode().strip())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._connection is not None:
            self._connection.close()
            await self._connection.wait_closed()
            self._connection = None

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
                result = await asyncio.wait_for(
                    self._connection.run(command, input=input, check=False), self._command_timeout
                )
        except TimeoutError:
            raise HostUnreachable(
                f"command did not finish within {self._command_timeout:.0f}s", node=self.address
            ) from None
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, OSError) as exc:
            raise HostUnreachable(f"connection lost during a command ({exc})", node=self.address) from None
        stdout = _text(result.stdout)[:MAX_OUTPUT]
        stderr = _text(result.stderr)[:MAX_OUTPUT]
        status = result.exit_status if result.exit_status is not None else -1
        if check and status != 0:
            tail = stderr.strip().splitlines()[-3:]
            what = what or f"command `{(command.split() or [command])[0]}`"
            raise HostCommandFailed(f"{what} exited with {status}: " + " / ".join(tail), node=self.address)
        return CommandResult(status, stdout, stderr)


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
