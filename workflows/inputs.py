"""How a workflow reads its raw input: a body that breaks the rules fails the workflow at once."""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

from contracts.request import InvalidRequest, TakeOverRequest, parse_request


def parse_request_or_fail(body: Any) -> TakeOverRequest:
    """`parse_request` for a workflow: a bad body fails it at once, non-retryable, listing every field."""
    try:
        return parse_request(body)
    except InvalidRequest as exc:
        raise ApplicationError(
            str(exc), [error.model_dump() for error in exc.errors], type=exc.type, non_retryable=True
        ) from None
