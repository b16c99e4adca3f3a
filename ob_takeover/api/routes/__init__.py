"""OCP's REST API (`/api/v2/…`) on the takeover workflows: every call maps onto a workflow, a query, an
update or the metadb. Roles as in OCP: ADMIN (everything, users' credentials and host types),
TASK_MANAGER (start and operate takeovers and prechecks), TASK_VIEWER (read tasks and logs).

One module per resource, each with its own router; `router` holds them all."""

from __future__ import annotations

from fastapi import APIRouter

from ob_takeover.api.deps import API, Services
from ob_takeover.api.routes import clusters, credentials, host_types, hosts, system, tasks, verification

__all__ = ["API", "Services", "router"]

router = APIRouter()
for resource in (system, clusters, verification, tasks, hosts, host_types, credentials):
    router.include_router(resource.router)
