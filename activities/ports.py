"""The two ports every subtask talks through: SQL on a cluster and commands on a host.

Production code gets `ObSysClient` (pymysql) and `HostClient` (asyncssh). The plan preview gets
recorders that answer reads from the discovered topology and keep what would be written, so the
preview runs the subtasks' real code. Tests can wrap the real ports to see what each subtask sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from contracts.topology import ClusterEndpoint
from metadb.credentials import Credential

if TYPE_CHECKING:
    from activities.facts import Fact

T = TypeVar("T")


class ClusterPort(Protocol):
    """Statements on one cluster endpoint as one user; rows come back keyed by upper-case column names."""

    @property
    def where(self) -> str: ...

    def query(self, sql: str, args: Sequence[Any] | None = None) -> list[dict[str, Any]]: ...

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> None: ...

    def read(self, fact: Fact[T]) -> T:
        """The answer to a fact (`activities.facts`): its statement's rows, parsed."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> ClusterPort: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None: ...


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class HostKeyCheck:
    """How to check a host's key: a known_hosts file, or trust on first use with a recorded key."""

    known_hosts: str | None = None
    recorded_key: str | None = None
    trust_on_first_use: bool = False


class HostPort(Protocol):
    """A session on one host; used with `async with`."""

    @property
    def address(self) -> str: ...

    async def run(
        self, command: str, *, input: str | None = None, check: bool = True, what: str | None = None
    ) -> CommandResult: ...

    async def __aenter__(self) -> HostPort: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


@dataclass(frozen=True)
class HostLogin:
    """Everything needed to open a session on a host."""

    address: str
    port: int
    credential: Credential
    keys: HostKeyCheck
    connect_timeout: float = 10.0
    # Called with the host's key the first time a trust-on-first-use login sees it.
    on_new_host_key: Callable[[str], None] | None = None
    # Only when the operator asks: the worker's SSH agent, an OpenSSH client config file.
    ssh_agent: bool = False
    ssh_config_file: str | None = None


ClusterConnector = Callable[[ClusterEndpoint, str], ClusterPort]
HostConnector = Callable[[HostLogin], HostPort]
