"""The project's one error tree.

Every classified failure is a `TakeoverError`: its `type` is the name an operator searches for in the
Temporal UI, the CLI prints and the REST API answers with; `retryable` says whether trying again later
may help (network, timeouts, a metadb restart). Activities turn these into Temporal's
`ApplicationError` in one place (`activities.failures`); the workflows, the CLI and the client compare
failure types with the constants below, never with string literals of their own.
"""

from __future__ import annotations

from typing import ClassVar


class TakeoverError(Exception):
    """Base of every classified failure; `node` names the server, host or zone it happened on."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, node: str | None = None, code: int | None = None) -> None:
        self.node = node
        self.code = code
        where = f"{node}: " if node else ""
        super().__init__(f"{where}{message}")

    @property
    def type(self) -> str:
        return type(self).__name__


# --- the cluster ----------------------------------------------------------------------------------


class ClusterUnreachable(TakeoverError):
    """Nothing answers at the address, or the connection dropped."""

    retryable = True


class BadCredentials(TakeoverError):
    """The cluster refused the login."""


class NotOceanBase(TakeoverError):
    """The server speaks MySQL but is not an OceanBase sys tenant."""


class UnsupportedVersion(TakeoverError):
    """The cluster runs a version this tool cannot manage."""


class TlsRefused(TakeoverError):
    """TLS was required but the server does not offer it, or its certificate is not the one expected."""


class ClusterSqlError(TakeoverError):
    """A statement failed on the cluster with an OceanBase error."""


class FailedPrecondition(TakeoverError):
    """The cluster, a host or the metadb is not in a state the subtask can work from."""


class ObserverNotRunning(FailedPrecondition):
    """No observer process serves a server's SQL port (OCP error 11053)."""


# --- the hosts ------------------------------------------------------------------------------------


class HostUnreachable(TakeoverError):
    """Nothing answers SSH at the host's address, or the connection dropped."""

    retryable = True


class HostAuthFailed(TakeoverError):
    """The host refused the credential."""


class HostKeyMismatch(TakeoverError):
    """The host's key is not the known one: possibly another machine answering at this address."""


class HostKeysUnknown(TakeoverError):
    """There is nothing to check a host's key against (no known_hosts file): a setting to fix, not a retry."""


class HostCommandFailed(TakeoverError):
    """A command ended with a non-zero exit code."""


# --- the metadb and the password box -------------------------------------------------------------


class MetadbUnavailable(TakeoverError):
    """The metadb cannot be reached or dropped the connection; retrying later may succeed."""

    retryable = True


class TransactionConflict(MetadbUnavailable):
    """The database chose this transaction as a deadlock victim or timed out a lock: run it again."""


class ClusterLocked(TakeoverError):
    """Another task holds the cluster's lock."""


class ClusterAlreadyManaged(TakeoverError):
    """The cluster is already managed here (OCP error 11033)."""


class TaskConflict(TakeoverError):
    """Another task works on the cluster or its endpoint, or the cluster is managed already: nothing started."""


class ClusterNotFound(TakeoverError, LookupError):
    """A managed-cluster id that the metadb does not have."""


class HostTypeNotFound(TakeoverError, LookupError):
    """A host type id that the metadb does not have."""


class CredentialNotFound(TakeoverError, LookupError):
    """A credential id or name that the password box does not have, or of the wrong kind."""


class CredentialMisuse(TakeoverError):
    """A stored credential asked for somewhere it is not bound to: another endpoint, cluster or host."""


class UserNotFound(TakeoverError, LookupError):
    """An API user name that the metadb does not have."""


class UserExists(TakeoverError):
    """An API user with that name exists already."""


class MasterKeyError(TakeoverError):
    """The master key is missing, malformed or not the one that encrypted the stored secrets."""


class CodecKeyError(TakeoverError):
    """The codec key is missing or malformed, or a payload was encrypted with an unknown key."""


# --- the task and its operators ------------------------------------------------------------------


class OperationRefused(TakeoverError):
    """An operator request that OCP's rules do not allow in the task's current state."""


# Failure types the workflows raise themselves (as ApplicationError), named once for every reader.
INVALID_REQUEST = "InvalidRequest"
TASK_NOT_READY = "TaskNotReady"
TOPOLOGY_UNAVAILABLE = "TopologyUnavailable"
OPERATION_REFUSED = OperationRefused.__name__
CLUSTER_UNREACHABLE = ClusterUnreachable.__name__


def _error_types(base: type[TakeoverError]) -> set[str]:
    return {base.__name__}.union(*(_error_types(sub) for sub in base.__subclasses__()))


# Failure types whose messages are built never to carry a secret (a password, a key, a statement with a
# password in it): Temporal keeps them readable without the codec, so that `temporal workflow describe`
# tells a DBA why a takeover failed. Any other failure's message is encrypted, and every stack trace is.
READABLE_FAILURE_TYPES = frozenset(
    _error_types(TakeoverError) | {INVALID_REQUEST, TASK_NOT_READY, TOPOLOGY_UNAVAILABLE}
)


def innermost_message(error: BaseException) -> str:
    """The message at the end of an exception's cause chain (a Temporal failure wraps its cause)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return str(getattr(error, "message", None) or error)
