"""How a workflow reads its raw input: a body that breaks the rules fails the workflow at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from temporalio.exceptions import ApplicationError

from contracts.request import InvalidRequest, TakeOverRequest, parse_request

Parsed = TypeVar("Parsed")


def parse_or_fail(parse: Callable[[Any], Parsed], body: Any) -> Parsed:
    """`parse` for a workflow: a bad body fails it at once, non-retryable, listing every field."""
    try:
        return parse(body)
    except InvalidRequest as exc:
        raise ApplicationError(
            str(exc), [error.model_dump() for error in exc.errors], type=exc.type, non_retryable=True
        ) from None


def parse_request_or_fail(body: Any) -> TakeOverRequest:
    """`parse_request` for a workflow (the takeover's body)."""
    return parse_or_fail(parse_request, body)
