"""The ids of the work a log line belongs to (task, subtask, workflow, cluster, trace), for JSON logs.

Set by the code that does the work (a subtask activity, a REST API request) with `bound_log_context`;
read by `ob_takeover.telemetry.JsonFormatter`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

_NONE: Mapping[str, Any] = MappingProxyType({})
log_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "ob_takeover_log_context", default=_NONE
)


@contextlib.contextmanager
def bound_log_context(**fields: Any) -> Iterator[None]:
    """Log lines written inside carry `fields` (with those of an enclosing context)."""
    token = log_context.set({**log_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        log_context.reset(token)
