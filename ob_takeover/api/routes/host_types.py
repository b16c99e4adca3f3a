"""Host types: listed for a manager, added by an administrator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from metadb import hosts
from ob_takeover.api.deps import (
    API,
    AdminCall,
    ManagerCall,
    PageNumber,
    PageOf,
    PageSize,
    answers,
    body_schema,
    json_object,
    parse_body,
)
from ob_takeover.api.envelope import ApiError, SubError, paged

router = APIRouter()


def _host_type(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "description": row["description"], "createTime": row["created_at"]}


class HostType(BaseModel):
    id: int
    name: str
    description: str
    createTime: str


@router.get(f"{API}/compute/hostTypes", summary="host types", responses=answers(PageOf[HostType]))
async def list_host_types(call: ManagerCall, page: PageNumber = 1, size: PageSize = 10) -> Response:
    number = page
    rows = await call.services.metadb(hosts.list_host_types, call.services.db)
    return call.ok(paged([_host_type(row) for row in rows], number, size))


class HostTypeBody(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    description: str = Field("", max_length=1024)


@router.post(
    f"{API}/compute/hostTypes",
    openapi_extra=body_schema(HostTypeBody),
    summary="add a host type",
    responses=answers(HostType, conflict=True),
)
async def add_host_type(request: Request, call: AdminCall) -> Response:
    body: HostTypeBody = parse_body(HostTypeBody, await json_object(request))
    db = call.services.db
    if any(row["name"] == body.name for row in await call.services.metadb(hosts.list_host_types, db)):
        raise ApiError(409, f"host type {body.name} exists", sub_errors=[SubError(field="name", message="exists")])
    host_type_id = await call.services.metadb(hosts.add_host_type, db, body.name, body.description)
    row = next(r for r in await call.services.metadb(hosts.list_host_types, db) if r["id"] == host_type_id)
    return call.ok(_host_type(row))
