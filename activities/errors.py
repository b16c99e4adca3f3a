"""The project's error tree, and how each kind reaches Temporal.

Activities raise these; `to_application_error` turns them into `ApplicationError` with a `type`
an operator can search for and a `non_retryable` flag that keeps classified failures from being
retried automatically.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError


class TakeoverError(Exception):
    """Base of every classified failure. `retryable` errors are transient (network, timeouts)."""

    retryable = False

    def __init__(self, message: str, *, node: str | None = None, code: int | None = None) -> None:
        self.node = node
        self.code = code
        where = f"{node}: " if node else ""
        super().__init__(f"{where}{message}")

    @property
    def type(self) -> str:
        return type(self).__name__


class ClusterUnreachable(TakeoverError):
    """Nothing answers at the address, or the connection dropped."""

    retryable = True


class BadCredentials(TakeoverError):
    """The cluster refused the login."""


class NotOceanBase(TakeoverError):
    """The server speaks MySQL but is not an OceanBase sys tenant."""


class UnsupportedVersion(TakeoverError):
    """The cluster runs a version this tool cannot manage."""


class ClusterSqlError(TakeoverError):
    """A statement failed on the cluster with an OceanBase error."""


class FailedPrecondition(TakeoverError):
    """The cluster is not in a state the subtask can work from."""


def to_application_error(error: TakeoverError) -> ApplicationError:
    """The Temporal form of a classified error: typed, and non-retryable unless transient."""
    return ApplicationError(str(error), type=error.type, non_retryable=not error.retryable)
