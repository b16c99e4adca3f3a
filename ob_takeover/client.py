"""The Python client for other services: start takeovers and prechecks, read the task, operate it.

    from ob_takeover.client import TakeoverClient

    client = await TakeoverClient.connect()                   # TEMPORAL_ADDRESS, encrypting converter
    takeover = await client.start({"rootSysCredentialId": 3, "address": "10.0.0.1", "port": 2881})
    task = await takeover.task()                              # OCP's task JSON, typed (TaskView)
    failed = [s for s in task.subtasks if s.status.value == "FAILED"]
    await takeover.retry_subtask(failed[0].id)
    task = await takeover.result()                            # waits for the end

Every operation returns the task as it is after the operation; a refused one raises
`OperationRefused` with OCP's reason.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from contracts.engine import (
    CANCEL_SUBTASK_UPDATE,
    DEFAULT_TASK_QUEUE,
    FLEET_QUERY,
    RETRY_SUBTASK_UPDATE,
    RETRY_UPDATE,
    ROLLBACK_UPDATE,
    SKIP_SUBTASK_UPDATE,
    fleet_workflow_id,
)
from contracts.errors import OperationRefused
from contracts.fleet import FleetRequest, FleetView, parse_fleet_request
from contracts.messages import PrecheckReport, SubtaskRef
from contracts.release import ReleaseRequest
from contracts.request import TakeOverRequest, parse_request
from contracts.settings import Settings, load_settings
from contracts.task_view import TaskView
from contracts.verification import VerificationResult, VerifyRequest
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_vault
from ob_takeover import tasks
from ob_takeover.connection import connect
from ob_takeover.tasks import TaskStarter
from workflows.fleet import TakeOverFleet
from workflows.takeover import TakeOverCluster


@dataclass
class Takeover:
    """One takeover workflow."""

    # A takeover's or a release's: both answer the task query and the operator updates.
    handle: WorkflowHandle[Any, TaskView]

    @property
    def workflow_id(self) -> str:
        return self.handle.id

    async def describe(self) -> WorkflowExecutionDescription:
        return await self.handle.describe()

    async def task(self) -> TaskView:
        return await self.handle.query(TakeOverCluster.task)

    async def subtask_log(self, subtask_id: int) -> str:
        return await self.handle.query(TakeOverCluster.subtask_log, SubtaskRef(subtask_id=subtask_id))

    async def _update(self, name: str, subtask_id: int | None = None) -> TaskView:
        args = [SubtaskRef(subtask_id=subtask_id)] if subtask_id is not None else []
        try:
            task: TaskView = await self.handle.execute_update(name, args=args, result_type=TaskView)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            raise OperationRefused(cause.message if isinstance(cause, ApplicationError) else str(cause)) from None
        return task

    async def retry(self) -> TaskView:
        return await self._update(RETRY_UPDATE)

    async def retry_subtask(self, subtask_id: int) -> TaskView:
        return await self._update(RETRY_SUBTASK_UPDATE, subtask_id)

    async def skip_subtask(self, subtask_id: int) -> TaskView:
        return await self._update(SKIP_SUBTASK_UPDATE, subtask_id)

    async def cancel_subtask(self, subtask_id: int) -> TaskView:
        return await self._update(CANCEL_SUBTASK_UPDATE, subtask_id)

    async def rollback(self) -> TaskView:
        return await self._update(ROLLBACK_UPDATE)

    async def abort(self) -> None:
        """Cancel the workflow: running subtasks stop and the cluster lock is released."""
        await self.handle.cancel()

    async def result(self) -> TaskView:
        return await self.handle.result()


@dataclass
class Fleet:
    """One fleet takeover workflow."""

    handle: WorkflowHandle[TakeOverFleet, FleetView]

    @property
    def workflow_id(self) -> str:
        return self.handle.id

    async def describe(self) -> WorkflowExecutionDescription:
        return await self.handle.describe()

    async def view(self) -> FleetView:
        """The fleet table: every member's status, task id and failed subtask."""
        view: FleetView = await self.handle.query(FLEET_QUERY, result_type=FleetView)
        return view

    async def result(self) -> FleetView:
        """Waits until every member's workflow has ended."""
        return await self.handle.result()


class TakeoverClient:
    """Connects with the project's encrypting data converter; see the module docstring.

    Tasks start through `ob_takeover.tasks` (the REST API's way in too), which needs the metadb and the
    password box: they are opened from the settings on the first start, unless given.
    """

    def __init__(
        self,
        client: Client,
        task_queue: str = DEFAULT_TASK_QUEUE,
        *,
        settings: Settings | None = None,
        db: Database | None = None,
        vault: Vault | None = None,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self._settings = settings
        self._db = db
        self._vault = vault

    @classmethod
    async def connect(
        cls, address: str | None = None, namespace: str | None = None, *, settings: Settings | None = None
    ) -> TakeoverClient:
        """Connect as the settings say (default: loaded from the environment and config file); `address`
        and `namespace` override them."""
        settings = settings or load_settings()
        overrides = {"temporal_address": address, "temporal_namespace": namespace}
        settings = settings.model_copy(update={k: v for k, v in overrides.items() if v})
        return cls(await connect(settings), settings.task_queue, settings=settings)

    async def _starter(self) -> TaskStarter:
        if self._db is not None and self._vault is not None:
            return TaskStarter(self._db, self._vault, self.client, self.task_queue)
        db, vault = await asyncio.to_thread(_open_metadb, self._settings or load_settings())
        self._db, self._vault = db, vault
        return TaskStarter(db, vault, self.client, self.task_queue)

    async def start(self, body: dict[str, Any] | TakeOverRequest, creator: str | None = None) -> Takeover:
        """Start a takeover; the body is validated here first, so a bad one never reaches Temporal, and its
        passwords go into the password box (the workflow gets their credential ids)."""
        request = body if isinstance(body, TakeOverRequest) else parse_request(body)
        started = await tasks.start_takeover(await self._starter(), request, creator=_creator(creator))
        return Takeover(started.handle)

    async def start_fleet(self, body: dict[str, Any] | FleetRequest, name: str, creator: str | None = None) -> Fleet:
        """Start a fleet takeover named `name` (workflow id `fleet-NAME`); the body is validated here first."""
        request = body if isinstance(body, FleetRequest) else parse_fleet_request(body)
        handle = await tasks.start_fleet(self.client, self.task_queue, request, name, creator=_creator(creator))
        return Fleet(handle)

    async def release(
        self,
        cluster_id: int,
        *,
        config_url: str | None = None,
        root_sys_credential_id: int | None = None,
        creator: str | None = None,
    ) -> Takeover:
        """Start moving managed cluster `cluster_id` (as `cluster list` shows it) out of management; the
        returned handle answers the task query and the operator updates as a takeover's. ClusterNotFound or
        FailedPrecondition when the release would be refused."""
        release = ReleaseRequest(
            cluster_id=cluster_id, config_url=config_url, root_sys_credential_id=root_sys_credential_id
        )
        started = await tasks.start_release(await self._starter(), release, creator=_creator(creator))
        return Takeover(started.handle)

    async def verify(
        self, cluster_id: int, *, repair: bool = False, creator: str | None = None
    ) -> WorkflowHandle[Any, VerificationResult]:
        """Start verifying managed cluster `cluster_id` (and, with `repair`, repairing what drifted); the
        handle's result is the `VerificationResult`, its `report` query the first report and, during a repair,
        its `task` query the repair task."""
        request = VerifyRequest(cluster_id=cluster_id, repair=repair)
        return await tasks.start_verification(await self._starter(), request, creator=_creator(creator))

    def get_fleet(self, name_or_id: str) -> Fleet:
        """A fleet by its name or its workflow id."""
        workflow_id = name_or_id if name_or_id.startswith("fleet-") else fleet_workflow_id(name_or_id)
        return Fleet(self.client.get_workflow_handle_for(TakeOverFleet.run, workflow_id))

    def get(self, workflow_id: str) -> Takeover:
        return Takeover(self.client.get_workflow_handle_for(TakeOverCluster.run, workflow_id))

    async def precheck(self, body: dict[str, Any] | TakeOverRequest, creator: str | None = None) -> PrecheckReport:
        request = body if isinstance(body, TakeOverRequest) else parse_request(body)
        return await tasks.run_precheck(await self._starter(), request, creator=_creator(creator))


def _creator(creator: str | None) -> str:
    """Who starts a workflow: the given creator, else the local user."""
    return creator or os.environ.get("USER", "unknown")


def _open_metadb(settings: Settings) -> tuple[Database, Vault]:
    """The settings' metadb, migrated, and its password box, verified against it."""
    db = Database(settings.metadb)
    db.check()
    migrate(db)
    vault = load_vault(settings)
    vault.verify(db)
    return db, vault
