"""OCP's response envelopes: success, error and page, with keys in alphabetical order and absent values left out."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel, Field

SERVER = socket.gethostname()

# OCP's error codes where OCP documents one for the case, ours (10xxx) where it does not.
ERROR_CODES = {
    400: 10000,
    401: 10010,
    403: 10011,
    404: 10004,
    405: 10005,
    409: 11033,
    429: 10029,
    500: 10500,
    503: 10503,
}


class SubError(BaseModel):
    field: str
    message: str
    rejected_value: Any = None


class SubErrorOut(BaseModel):
    field: str
    message: str
    rejectedValue: Any = Field(None, description="the submitted value, never a secret; absent when not shown")


class ErrorDetail(BaseModel):
    """`error` of OCP's error envelope."""

    code: int = Field(description="OCP's error code where OCP documents one for the case, 10xxx otherwise")
    message: str
    subErrors: list[SubErrorOut] = Field(description="one per field that breaks a rule")


class ErrorEnvelope(BaseModel):
    """OCP's error envelope: the HTTP status is `status`."""

    duration: int
    error: ErrorDetail
    server: str
    status: int
    successful: bool = Field(description="always false")
    timestamp: str
    traceId: str


class ApiError(Exception):
    """An error answer: the HTTP status, OCP's code, a message and one sub-error per wrong field."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: int | None = None,
        sub_errors: list[SubError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or ERROR_CODES.get(status, 10500)
        self.sub_errors = sub_errors or []
        self.headers = headers or {}


def invalid(errors: Sequence[Any], *, skip: int = 0) -> ApiError:
    """A 400 with one sub-error per pydantic error; `skip` drops the location's first parts ("body")."""
    sub = [
        SubError(field=".".join(str(p) for p in e["loc"][skip:]) or str(e["loc"][0] if e["loc"] else "body"),
                 message=e["msg"])
        for e in errors
    ]  # fmt: skip
    return ApiError(400, "; ".join(f"{s.field}: {s.message}" for s in sub), sub_errors=sub)


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def render(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    text = json.dumps(_without_none(body), sort_keys=True, separators=(",", ":"), default=str)
    return Response(text, status_code=status, media_type="application/json", headers=headers)


def _plain(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", by_alias=True)
    if isinstance(data, list):
        return [_plain(item) for item in data]
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    return data


def success(data: Any, *, trace_id: str, began: float) -> Response:
    """`{data, duration, server, status: 200, successful: true, timestamp, traceId}`; no data, no key."""
    return render(
        {
            "data": _plain(data),
            "duration": int((time.monotonic() - began) * 1000),
            "server": SERVER,
            "status": 200,
            "successful": True,
            "timestamp": now_iso(),
            "traceId": trace_id,
        },
        200,
    )


def failure(error: ApiError, *, trace_id: str, began: float) -> Response:
    sub_errors = [{"field": e.field, "message": e.message, "rejectedValue": e.rejected_value} for e in error.sub_errors]
    return render(
        {
            "duration": int((time.monotonic() - began) * 1000),
            "error": {"code": error.code, "message": error.message, "subErrors": sub_errors},
            "server": SERVER,
            "status": error.status,
            "successful": False,
            "timestamp": now_iso(),
            "traceId": trace_id,
        },
        error.status,
        error.headers,
    )


def paged(items: list[Any], number: int, size: int) -> dict[str, Any]:
    """OCP's page `number` (from 1) of `items`: `{contents, page: {number, size, totalElements, totalPages}}`."""
    start = (number - 1) * size
    return page_of(items[start : start + size], number, size, len(items))


def page_of(contents: list[Any], number: int, size: int, total: int) -> dict[str, Any]:
    """OCP's page whose `contents` are already the page's."""
    return {
        "contents": _plain(contents),
        "page": {"number": number, "size": size, "totalElements": total, "totalPages": (total + size - 1) // size},
    }
