"""The body of takeOver and takeOverPreCheck as a `TakeOverRequest`, read as OCP reads it."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel

from contracts.request import SECRET_FIELDS, HostInfo, InvalidRequest, TakeOverRequest, parse_request
from metadb import credentials, users
from metadb.users import ADMIN
from ob_takeover.api.auth import require
from ob_takeover.api.deps import Call
from ob_takeover.api.envelope import ApiError, SubError

log = logging.getLogger("ob_takeover.api")


def _fields(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def takeover_request(body: dict[str, Any], trace_id: str) -> TakeOverRequest:
    """The body as a takeover request: fields OCP does not document are dropped and logged (as OCP does);
    a body that breaks a rule is a 400 naming every field, with the value unless it is a secret."""
    known = _fields(TakeOverRequest)
    dropped = sorted(set(body) - known)
    # A known field in the wrong case is a typo, not an extension: it must not fall back to a default.
    typos = [
        SubError(field=k, message=f"unknown field; did you mean {f}?")
        for k in dropped
        for f in known
        if k.lower() == f.lower()
    ]
    if typos:
        raise ApiError(400, "; ".join(f"{e.field}: {e.message}" for e in typos), sub_errors=typos)
    clean = {k: v for k, v in body.items() if k not in dropped}
    host_info = clean.get("hostInfo")
    if isinstance(host_info, dict):
        extra = sorted(set(host_info) - _fields(HostInfo))
        dropped += [f"hostInfo.{k}" for k in extra]
        clean["hostInfo"] = {k: v for k, v in host_info.items() if k not in extra}
    if dropped:
        log.info("trace %s: ignored fields OCP does not document: %s", trace_id, ", ".join(dropped))
    try:
        return parse_request(clean)
    except InvalidRequest as exc:
        raise rejected_fields(exc, clean) from None


def rejected_fields(error: InvalidRequest, body: dict[str, Any] | None = None) -> ApiError:
    """A 400 with one sub-error per field `error` names, with the submitted value where `body` has it."""
    sub_errors = [
        SubError(field=e.field, message=e.message, rejected_value=_value(body or {}, e.field)) for e in error.errors
    ]
    return ApiError(400, str(error), sub_errors=sub_errors)


async def authorize_stored_credentials(call: Call, body: TakeOverRequest) -> None:
    """Stored credentials a body names, as its caller may use them. A cluster credential logs in wherever the
    body's address points: only an ADMIN names one. A host credential logs in to the hosts it names, or, if it
    names none, to any host the cluster lists: a TASK_MANAGER names only one bound to its hosts."""
    if body.root_sys_credential_id is not None or body.proxyro_credential_id is not None:
        require(call.user, ADMIN)
    if body.host_info is None or users.role_allows(call.user.role, ADMIN):
        return
    row = await call.services.metadb(
        credentials.describe_credential, call.services.db, credential_id=body.host_info.credential_id
    )
    if row is not None and not json.loads(row["hosts"] or "[]"):
        raise ApiError(
            403,
            f"host credential {row['id']} names no hosts, so it would log in to whatever host the cluster lists: "
            f"only an ADMIN may use it; an ADMIN binds it to its hosts with `ob-takeover credential bind "
            f"{row['id']} --hosts …` (or adds it with `hosts`)",
        )


def _value(body: dict[str, Any], path: str) -> Any:
    """The submitted value of a field, for the error's rejectedValue; never a secret or a structure."""
    value: Any = body
    for part in path.split("."):
        if part in SECRET_FIELDS or not isinstance(value, dict):
            return None
        value = value.get(part)
    return value if isinstance(value, str | int | float | bool) else None
