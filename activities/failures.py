"""The one translation of the project's errors into Temporal failures, used by every activity."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.exceptions import ApplicationError

from contracts.errors import TakeoverError


def to_application_error(
    error: BaseException, *, what: str = "", node: str | None = None, log: Sequence[str] = ()
) -> BaseException:
    """The Temporal form of `error`.

    A classified error becomes an `ApplicationError` with its type, non-retryable unless transient,
    prefixed with the node the subtask worked on (`what` `node`, e.g. "server 10.0.0.1:2882") when the
    error names another one (a statement runs through the cluster endpoint), and carrying `log` (what
    the subtask said before it failed) in its details. Anything else is
    returned unchanged: Temporal retries an unclassified failure as transient.
    """
    if not isinstance(error, TakeoverError):
        return error
    message = str(error)
    if node and error.node != node:
        message = f"{what} {node}: {message}"
    details = [{"log": list(log)}] if log else []
    return ApplicationError(message, *details, type=error.type, non_retryable=not error.retryable)
