"""Hosts: the machines the takeovers registered, as OCP's host module lists them (never a credential)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response

from metadb import inventory
from ob_takeover.api.deps import API, Id, InventoryPageSize, PageNumber, PageOf, ViewerCall, answers
from ob_takeover.api.envelope import ApiError, SubError, page_of
from ob_takeover.api.inventory import Host, host

router = APIRouter()

_LIST = "comma-separated"


@router.get(f"{API}/compute/hosts", summary="hosts (OCP's Host)", responses=answers(PageOf[Host]))
async def list_hosts(
    call: ViewerCall,
    status: str | None = Query(
        None, max_length=256, description=f"{_LIST}: ONLINE (a managed cluster holds it), AVAILABLE"
    ),
    keyword: str | None = Query(None, max_length=128, description="part of the host's name, address or service"),
    included_service_type: str | None = Query(None, alias="includedServiceType", max_length=256, description=_LIST),
    excluded_service_type: str | None = Query(None, alias="excludedServiceType", max_length=256, description=_LIST),
    sort: str | None = Query(
        None, max_length=64, pattern=inventory.sort_pattern(inventory.HOST_SORTS), description="FIELD[,asc|desc]"
    ),
    page: PageNumber = 1,
    size: InventoryPageSize = 10,
) -> Response:
    number = page
    try:
        rows = await call.services.metadb(inventory.host_rows, call.services.db, sort=sort)
    except ValueError as exc:
        raise ApiError(400, str(exc), sub_errors=[SubError(field="sort", message=str(exc))]) from None
    wanted = {s.strip() for s in (status or "").split(",") if s.strip()}
    included = {s.strip() for s in (included_service_type or "").split(",") if s.strip()}
    excluded = {s.strip() for s in (excluded_service_type or "").split(",") if s.strip()}
    needle = (keyword or "").lower()
    found = []
    for item in (host(row) for row in rows):
        types = {service.type for service in item.services}
        texts = [item.name, item.inner_ip_address, *(service.name for service in item.services)]
        if (
            (not wanted or item.status in wanted)
            and (not included or types & included)
            and not types & excluded
            and (not needle or any(needle in text.lower() for text in texts))
        ):
            found.append(item)
    return call.ok(page_of(found[(number - 1) * size : number * size], number, size, len(found)))


@router.get(f"{API}/compute/hosts/{{host_id}}", summary="a host (OCP's Host)", responses=answers(Host))
async def get_host(host_id: Id, call: ViewerCall) -> Response:
    rows = await call.services.metadb(inventory.host_rows, call.services.db, host_id=host_id)
    if not rows:
        raise ApiError(404, f"host {host_id} does not exist")
    return call.ok(host(rows[0]))
