"""What every route of OCP's REST API works with: the services, the authenticated call (`ViewerCall`,
`ManagerCall`, `AdminCall`, by OCP's roles), ids in paths, and the checks of bodies and paging."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from temporalio.client import Client

from contracts.settings import Settings
from contracts.task_view import TaskView
from metadb.db import Database
from metadb.users import ADMIN, TASK_MANAGER, TASK_VIEWER
from metadb.vault import Vault
from ob_takeover.api.auth import Authenticator, User, require
from ob_takeover.api.envelope import ApiError, invalid, success
from ob_takeover.tasks import TaskStarter, sweep_ended_tasks

API = "/api/v2"
# How often the service closes tasks whose workflow ended without ending them (their passwords leave the box).
SWEEP_SECONDS = 60.0
log = logging.getLogger("ob_takeover.api")


class ClosedViews:
    """The views of task runs that have ended, and the runs Temporal no longer knows (past its retention),
    most recently used kept: a task list reads each from Temporal once, however many pages and pollers ask.
    A run id is never reused, so neither answer can change."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._views: OrderedDict[tuple[str, str], TaskView | None] = OrderedDict()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._views

    def get(self, workflow_id: str, run_id: str) -> TaskView | None:
        """The run's view; None for a run Temporal no longer knows."""
        self._views.move_to_end((workflow_id, run_id))
        return self._views[(workflow_id, run_id)]

    def keep(self, workflow_id: str, run_id: str, view: TaskView | None) -> None:
        self._views[(workflow_id, run_id)] = view
        while len(self._views) > self._size:
            self._views.popitem(last=False)


@dataclass
class Services:
    """What the API works with: settings, metadb, password box, users and (connected on first use) Temporal."""

    settings: Settings
    db: Database
    vault: Vault
    auth: Authenticator
    connect: Callable[[], Awaitable[Client]]
    # The views of task runs that have ended, shared by every call.
    closed_views: ClosedViews = field(default_factory=ClosedViews)
    _client: Client | None = None
    _lock: asyncio.Lock | None = None
    _swept: float = -SWEEP_SECONDS

    async def temporal(self) -> Client:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await self.connect()
                except Exception as exc:
                    raise ApiError(503, f"Temporal is unreachable ({type(exc).__name__}); try again") from None
        return self._client

    async def metadb(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A metadb call, off the event loop."""
        return await asyncio.to_thread(work, *args, **kwargs)

    async def starter(self) -> TaskStarter:
        """What tasks start with (`ob_takeover.tasks`): the metadb, the password box and Temporal."""
        return TaskStarter(self.db, self.vault, await self.temporal(), self.settings.task_queue)

    async def sweep_if_due(self) -> None:
        """Close the tasks whose workflow ended without ending them (`ob_takeover.tasks.sweep_ended_tasks`),
        at most once every SWEEP_SECONDS, on the calls that start or list tasks."""
        now = time.monotonic()
        if now - self._swept < SWEEP_SECONDS:
            return
        self._swept = now
        try:
            closed = await sweep_ended_tasks(await self.starter())
        except Exception:  # the sweep is housekeeping: the call it rides on goes on without it
            log.exception("sweeping ended tasks failed")
            return
        if closed:
            log.info("closed %d task(s) whose workflow ended before the task did", closed)


@dataclass
class Call:
    """One API call: who makes it, its trace id, and what it works with."""

    user: User
    trace_id: str
    began: float
    services: Services

    def ok(self, data: Any = None) -> Response:
        return success(data, trace_id=self.trace_id, began=self.began)


class Authenticated:
    """The dependency that authenticates a call and requires `role`; the API's document reads the role here."""

    def __init__(self, role: str) -> None:
        self.role = role

    async def __call__(self, request: Request) -> Call:
        services: Services = request.app.state.services
        client = request.client.host if request.client else "unknown"
        user = await services.auth.user(request.headers.get("Authorization"), client)
        request.state.user = user.name
        require(user, self.role)
        return Call(user, request.state.trace_id, request.state.began, services)


# Ids are positive 64-bit integers; anything else is a 400 naming the parameter.
MAX_ID = 2**63 - 1
Id = Annotated[int, FastApiPath(ge=1, le=MAX_ID)]
viewer = Depends(Authenticated(TASK_VIEWER))
manager = Depends(Authenticated(TASK_MANAGER))
admin = Depends(Authenticated(ADMIN))
# A call by a user with at least the role: TASK_VIEWER reads, TASK_MANAGER operates, ADMIN does everything.
ViewerCall = Annotated[Call, viewer]
ManagerCall = Annotated[Call, manager]
AdminCall = Annotated[Call, admin]


async def json_object(request: Request) -> dict[str, Any]:
    """The JSON object in the body, whatever Content-Type says; 400 otherwise."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def parse_body(model: type[BaseModel], body: dict[str, Any]) -> Any:
    """`body` as a `model`; a 400 naming every field that breaks a rule otherwise."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid(exc.errors(include_input=False, include_url=False, include_context=False)) from None


def body_schema(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint that parses its JSON body itself; the models it refers to are
    moved into the document's components (`ob_takeover.api.document`)."""
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


Item = TypeVar("Item")


class Page(BaseModel):
    number: int
    size: int
    totalElements: int
    totalPages: int


class Done(BaseModel):
    """OCP's envelope of a call with nothing to return: no `data`."""

    duration: int
    server: str
    status: int
    successful: bool
    timestamp: str
    traceId: str


class Answer(Done, Generic[Item]):
    """OCP's success envelope, for the OpenAPI document."""

    data: Item


class Contents(BaseModel, Generic[Item]):
    """OCP's list without paging: `{contents}`."""

    contents: list[Item]


class PageOf(BaseModel, Generic[Item]):
    """OCP's page: `{contents, page}`."""

    contents: list[Item]
    page: Page


def answers(model: Any, *, conflict: bool = False) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that answers `model` in OCP's envelope (None: nothing in `data`); with
    `conflict`, also its 409 (the document module gives every error its schema and meaning)."""
    ok = (
        {"model": Done, "description": "OCP's envelope, without data"}
        if model is None
        else {"model": Answer[model], "description": "OCP's envelope with the answer in `data`"}
    )
    responses: dict[int | str, dict[str, Any]] = {200: ok}
    if conflict:
        responses[409] = {"description": "conflict"}
    return responses


# Pages past this would skip more rows than any listing has (and overflow a database's OFFSET).
MAX_PAGE = 1_000_000
# A listing's page number, from 1; its size, 1 to 1000 unless the route allows more.
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, description="the page, from 1")]
PageSize = Annotated[int, Query(ge=1, le=1000, description="rows on a page, 1 to 1000")]
# The inventory's listings (clusters, hosts) take pages of up to 2000, as OCP's do.
InventoryPageSize = Annotated[int, Query(ge=1, le=2000, description="rows on a page, 1 to 2000")]
