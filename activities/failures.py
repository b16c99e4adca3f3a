"""The one translation of the project's errors into Temporal failures, and the one adapter every activity
goes through (`project_activity`): its errors translated, its log lines carrying the workflow they serve."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.errors import TakeoverError
from contracts.log_context import bound_log_context

Run = TypeVar("Run", bound=Callable[..., Awaitable[Any]])


def project_activity(name: str) -> Callable[[Run], Run]:
    """`activity.defn(name=name)` for the project's activities: a `TakeoverError` leaves as its typed
    `ApplicationError`, and log lines written inside name the activity and its workflow. (Subtasks add their
    node, log and metrics in `activities.runtime.subtask_activity`, which goes through here as well.)"""

    def decorate(run: Run) -> Run:
        @functools.wraps(run)
        async def adapted(*args: Any) -> Any:
            info = activity.info()
            with bound_log_context(activity=name, workflowId=info.workflow_id):
                try:
                    return await run(*args)
                except TakeoverError as exc:
                    raise to_application_error(exc) from None

        return activity.defn(name=name)(adapted)  # type: ignore[return-value]

    return decorate


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
