"""What subtask activities run with: the worker's metadb and password box, and the `Work` handed to
each subtask implementation (its input, log, context and clients).

Implementations are plain functions `(work) -> None` that run in a thread; `subtask_activity` turns
one into a Temporal activity that heartbeats while it runs, stops it on cancellation and maps the
project's errors to typed `ApplicationError`s.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.connections import ConnectionPools
from activities.credentials import Credentials
from activities.facts import Fact
from activities.failures import project_activity, to_application_error
from activities.host_client import HostClient
from activities.metrics import record_subtask
from activities.ob_sys_client import DEFAULT_TLS, ClusterTls, ObSysClient, ReportsConnectionSecurity
from activities.ports import (
    ClusterConnector,
    ClusterPort,
    CommandResult,
    HostConnector,
    HostKeyCheck,
    HostLogin,
    HostPort,
)
from contracts.errors import FailedPrecondition, MetadbUnavailable
from contracts.log_context import bound_log_context
from contracts.messages import SubtaskInput, SubtaskResult
from contracts.settings import Settings, load_settings
from contracts.topology import ClusterEndpoint
from metadb import clusters, hosts, tasks
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_vault

log = logging.getLogger("ob_takeover.activities")
T = TypeVar("T")


ROOT_USER = "root"


def connect_cluster(
    endpoint: ClusterEndpoint, user: str, tls: ClusterTls = DEFAULT_TLS, pools: ConnectionPools | None = None
) -> ClusterPort:
    """The production cluster port: pymysql to the sys tenant as `user`. root's statements use the worker's
    connections (`pools`); a login as any other user is there to prove that user's password works (the
    monitor user's, proxyro's), so it always opens a connection of its own."""
    pool = pools.sql if pools is not None and user == ROOT_USER else None
    return ObSysClient(endpoint, user=user, tls=tls, pool=pool)


@dataclass
class Runtime:
    """The worker's shared resources for activities."""

    db: Database
    vault: Vault
    # The settings the worker was started with; engine settings (timeout scale, backoff) come from here.
    settings: Settings = field(default_factory=load_settings)
    public_url: str = "http://127.0.0.1:8080"
    known_hosts: str | None = None
    trust_on_first_use: bool = False
    poll_interval: float = 2.0
    # How subtasks reach clusters and hosts: the real clients, or the plan preview's recorders.
    cluster_connector: ClusterConnector = field(default=connect_cluster)
    host_connector: HostConnector = field(default=HostClient)
    # The worker's SQL and SSH connections, reused by every subtask (shared by copies of this runtime).
    pools: ConnectionPools = field(default_factory=ConnectionPools)

    def __post_init__(self) -> None:
        # The real clients by default, over this runtime's pools.
        if self.cluster_connector is connect_cluster:
            self.cluster_connector = functools.partial(connect_cluster, pools=self.pools)
        if self.host_connector is HostClient:
            self.host_connector = functools.partial(HostClient, pool=self.pools.ssh)

    def cluster(self, endpoint: ClusterEndpoint, user: str = ROOT_USER) -> ClusterPort:
        """A port to the cluster's sys tenant as `user` (root unless said), connected on first use."""
        return self.cluster_connector(endpoint, user)

    @property
    def credentials(self) -> Credentials:
        """The password box with the binding rules (`activities.credentials`)."""
        return Credentials(self.db, self.vault, self.trust_on_first_use)

    def host(
        self,
        ip: str,
        *,
        ssh_port: int,
        credential_id: int,
        recorded_key: str | None = None,
        remember_key: bool = False,
        connect_timeout: float = 10.0,
    ) -> HostPort:
        """A port to a host with a credential from the password box, its key checked by the worker's
        policy; with `remember_key`, a key seen for the first time (trust on first use) is recorded."""
        credential = self.credentials.host_credential(ip, credential_id, key_known=recorded_key is not None)
        keys = HostKeyCheck(
            known_hosts=self.known_hosts, recorded_key=recorded_key, trust_on_first_use=self.trust_on_first_use
        )

        def remember(key: str) -> None:
            hosts.set_host_key(self.db, ip, key)

        login = HostLogin(
            ip,
            ssh_port,
            credential,
            keys,
            connect_timeout,
            remember if remember_key else None,
            ssh_agent=self.settings.ssh_agent,
            ssh_config_file=self.settings.ssh_config_file or None,
        )
        return self.host_connector(login)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """Open and migrate the metadb, load and check the master key: clear errors, never garbage."""
        db = Database(settings.metadb)
        db.check()
        migrate(db)
        vault = load_vault(settings)
        vault.verify(db)
        pools = ConnectionPools()
        return cls(
            db=db,
            vault=vault,
            settings=settings,
            public_url=settings.public_url.rstrip("/"),
            known_hosts=os.path.expanduser(settings.known_hosts),
            trust_on_first_use=settings.host_key_policy == "tofu",
            poll_interval=settings.poll_interval,
            cluster_connector=functools.partial(
                connect_cluster, tls=ClusterTls(settings.cluster_tls, settings.cluster_tls_ca), pools=pools
            ),
            pools=pools,
        )


class Cancelled(Exception):
    """The subtask was cancelled while it worked; raised from `Work.checkpoint`."""


@dataclass
class Work:
    """One run of a subtask implementation: its input, the runtime, and what it reports."""

    arg: SubtaskInput
    runtime: Runtime
    log: list[str] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)
    # What an attempt has done that the next attempt should know (sent with every heartbeat).
    progress: dict[str, Any] = field(default_factory=dict)
    # The Temporal run this subtask belongs to ("" outside an activity, as in the plan preview).
    run_id: str = ""
    _sys: ClusterPort | None = None
    _endpoint: ClusterEndpoint | None = None

    def say(self, message: str) -> None:
        self.log.append(message)
        log.info("task %s subtask %s: %s", self.arg.task_id, self.arg.subtask_id, message)

    def keep_progress(self, **done: Any) -> None:
        """Record progress that a later attempt of this subtask reads back from `progress`, and send it
        with a heartbeat at once, so that a worker lost right after this step does not lose it."""
        self.progress.update(done)
        if self.run_id and activity.in_activity():
            activity.heartbeat(self.heartbeat_details())

    def heartbeat_details(self) -> dict[str, Any]:
        """The latest log lines (a subtask that times out still shows what it was doing) and the progress."""
        return {"log": self.log[-HEARTBEAT_LOG_LINES:], "progress": self.progress}

    def checkpoint(self) -> None:
        """Stop here if the subtask was cancelled."""
        if self.cancelled.is_set():
            raise Cancelled()

    def wait(self, seconds: float) -> None:
        """Sleep between polls, waking up at once on cancellation."""
        if self.cancelled.wait(seconds):
            raise Cancelled()

    @property
    def db(self) -> Database:
        return self.runtime.db

    @property
    def vault(self) -> Vault:
        return self.runtime.vault

    @property
    def endpoint(self) -> ClusterEndpoint:
        """The cluster endpoint with root@sys's password, read from the password box once per run."""
        if self._endpoint is None:
            self._endpoint = self.runtime.credentials.endpoint(self.arg.target.endpoint, self.cluster_key)
        return self._endpoint

    @property
    def sys(self) -> ClusterPort:
        """root@sys on the cluster, connected on first use."""
        if self._sys is None:
            self._sys = _WatchedCluster(self.runtime.cluster(self.endpoint), self.say)
        return self._sys

    async def query(self, statement: str) -> list[dict[str, Any]]:
        """A statement as root@sys from async work, in a worker thread (connecting and reading the password
        box there too): the event loop never blocks, and a poller holds no thread while it waits."""
        return await asyncio.to_thread(lambda: self.sys.query(statement))

    async def read(self, fact: Fact[T]) -> T:
        """A fact as root@sys from async work, in a worker thread as `query`."""
        return await asyncio.to_thread(lambda: self.sys.read(fact))

    def cluster_as(self, user: str, password: str) -> ClusterPort:
        """The same cluster endpoint as another sys-tenant user, on a login of its own (`connect_cluster`)."""
        port = self.runtime.cluster(self.endpoint.model_copy(update={"root_sys_password": password}), user)
        return _WatchedCluster(port, self.say)

    def host(self, ip: str, *, reserving: bool = False) -> HostPort:
        """A session on a host reserved for this takeover's cluster ('Reserve host' runs first and may not be
        skipped: a host that another cluster holds is never worked on with that cluster's credential). The
        host's record and credential are read from the metadb in a thread when the session is entered."""
        return _HostOpenedInThread(ip, lambda: self._host_now(ip, reserving), self.say)

    def _host_now(self, ip: str, reserving: bool) -> HostPort:
        row = hosts.find_host(self.db, ip)
        if row is None:
            raise FailedPrecondition("host is not registered; 'Reserve host' must run first", node=ip)
        holder = row["reserved_by_cluster_id"]
        if holder is not None and holder != self.known_cluster_id():
            raise FailedPrecondition(
                f"host is reserved by managed cluster {holder}, not by this takeover's cluster: it is not worked on",
                node=ip,
            )
        if holder is None and not reserving:
            raise FailedPrecondition(
                "host is not reserved for this cluster: 'Reserve host' must run first (it cannot be skipped)", node=ip
            )
        return self.runtime.host(
            ip,
            ssh_port=int(row["ssh_port"]),
            credential_id=int(row["credential_id"]),
            recorded_key=row.get("host_key"),
            remember_key=True,
        )

    def check_task(self) -> None:
        """Refuse to work for a task id this workflow does not own (see `metadb.tasks.check_task_owner`);
        the plan preview, outside any workflow, is not checked."""
        if self.run_id:
            tasks.check_task_owner(self.db, self.arg.task_id, self.arg.workflow_id, self.run_id)

    def holds_host(self, ip: str) -> bool:
        """Whether the host is reserved for this takeover's cluster (what `host` requires)."""
        row = hosts.find_host(self.db, ip)
        cluster_id = self.known_cluster_id()
        return row is not None and cluster_id is not None and row["reserved_by_cluster_id"] == cluster_id

    @property
    def owner_task_id(self) -> int:
        """The task whose work this subtask undoes: this task, or for a release the takeover's task."""
        return self.arg.target.owner_task_id or self.arg.task_id

    @property
    def cluster_key(self) -> str:
        return self.arg.target.key

    def known_cluster_id(self) -> int | None:
        """The managed cluster's id, from the task context or the metadb; None before it is recorded."""
        if "clusterId" in self.arg.context:
            return int(self.arg.context["clusterId"])
        row = clusters.find_cluster(self.db, *self.arg.target.name_and_id)
        if row is not None and row["task_id"] == self.owner_task_id:
            return int(row["id"])
        return None

    def cluster_id(self) -> int:
        """The managed cluster's id; FailedPrecondition when "Prepare take over cluster" has not run."""
        cluster_id = self.known_cluster_id()
        if cluster_id is None:
            raise FailedPrecondition(
                f"cluster {self.cluster_key} has no record from task {self.arg.task_id}; "
                "'Prepare take over cluster' must run first"
            )
        return cluster_id

    def close(self) -> None:
        if self._sys is not None:
            self._sys.close()


# An answer slower than this is told in the subtask's log: the network to the node (a partition, a congested
# link) or the node itself held the subtask up, and the log says where and how long.
SLOW_ANSWER_SECONDS = 5.0


def _tell_if_slow(say: Callable[[str], None], where: str, what: str, began: float) -> None:
    took = time.monotonic() - began
    if took >= SLOW_ANSWER_SECONDS:
        say(
            f"{where} took {took:.1f}s to answer {what} (a network partition, a congested link or a busy node "
            "held it up); the subtask went on once it answered"
        )


class _WatchedCluster:
    """A `ClusterPort` that tells the subtask's log of a statement answered late (`SLOW_ANSWER_SECONDS`)."""

    def __init__(self, port: ClusterPort, say: Callable[[str], None]) -> None:
        self._port = port
        self._say = say

    @property
    def where(self) -> str:
        return self._port.where

    def connection_security(self) -> Any:
        return self._port.connection_security() if isinstance(self._port, ReportsConnectionSecurity) else None

    def query(self, sql: str, args: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        began = time.monotonic()
        rows = self._port.query(sql, args)
        _tell_if_slow(self._say, self.where, "a statement", began)
        return rows

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> None:
        began = time.monotonic()
        self._port.execute(sql, args)
        _tell_if_slow(self._say, self.where, "a statement", began)

    def read(self, fact: Fact[T]) -> T:
        began = time.monotonic()
        answer = self._port.read(fact)
        _tell_if_slow(self._say, self.where, "a query", began)
        return answer

    def close(self) -> None:
        self._port.close()

    def __enter__(self) -> _WatchedCluster:
        self._port.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._port.__exit__(exc_type, exc, traceback)


class _WatchedHost:
    """A `HostPort` that tells the subtask's log of a command answered late (`SLOW_ANSWER_SECONDS`)."""

    def __init__(self, port: HostPort, say: Callable[[str], None]) -> None:
        self._port = port
        self._say = say
        self.address = port.address

    async def run(
        self, command: str, *, input: str | None = None, check: bool = True, what: str | None = None
    ) -> CommandResult:
        began = time.monotonic()
        result = await self._port.run(command, input=input, check=check, what=what)
        _tell_if_slow(self._say, f"host {self.address}", what or "a command", began)
        return result

    async def __aenter__(self) -> _WatchedHost:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


class _HostOpenedInThread:
    """A `HostPort` whose login (metadb row, password box) is looked up in a worker thread on entry, so
    that async subtasks never block the event loop on the metadb."""

    def __init__(self, ip: str, open_port: Callable[[], HostPort], say: Callable[[str], None]) -> None:
        self.address = ip
        self._open = open_port
        self._say = say
        self._port: HostPort | None = None

    async def __aenter__(self) -> HostPort:
        port = await asyncio.to_thread(self._open)
        began = time.monotonic()
        entered = await port.__aenter__()
        _tell_if_slow(self._say, f"host {self.address}", "the SSH login", began)
        self._port = port
        return _WatchedHost(entered, self._say)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._port is not None:
            await self._port.__aexit__(*exc_info)
            self._port = None

    async def run(
        self, command: str, *, input: str | None = None, check: bool = True, what: str | None = None
    ) -> CommandResult:
        raise RuntimeError("use the host session in `async with`")


Implementation = Callable[[Work], None] | Callable[[Work], Awaitable[None]]


def _node_of(work: Work) -> tuple[str, str | None]:
    arg = work.arg
    if arg.server:
        return "server", arg.server.label
    if arg.zone:
        return "zone", arg.zone.name
    if arg.host:
        return "host", arg.host.ip
    return "cluster", None


HEARTBEAT_LOG_LINES = 20


def subtask_activity(name: str, implementation: Implementation, runtime: Runtime) -> Callable[..., Any]:
    """A Temporal activity running `implementation` in a thread, heartbeating while it works."""

    @project_activity(name)
    async def run(arg: SubtaskInput) -> SubtaskResult:
        context = {
            "taskId": arg.task_id,
            "subtaskId": arg.subtask_id,
            "workflowId": arg.workflow_id,
            "cluster": arg.cluster_key,
        }
        began = time.monotonic()
        outcome, error_type = "failed", None
        try:
            with bound_log_context(**context):
                result = await _run(arg)
            outcome = "completed"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except ApplicationError as exc:
            error_type = exc.type
            raise
        finally:
            record_subtask(arg.subtask_name, outcome, time.monotonic() - began, activity.info().attempt, error_type)

    async def _run(arg: SubtaskInput) -> SubtaskResult:
        work = Work(arg=arg, runtime=runtime, run_id=activity.info().workflow_run_id or "")
        info = activity.info()
        if info.attempt > 1:
            work.progress = _progress_of(info.heartbeat_details)
            failure = work.progress.pop(LAST_FAILURE, None)
            work.say(f"attempt {info.attempt}" + (f" (attempt {info.attempt - 1}: {failure})" if failure else ""))
        if inspect.iscoroutinefunction(implementation):
            thread = asyncio.ensure_future(_guarded_async(implementation, work))
        else:
            thread = asyncio.ensure_future(asyncio.to_thread(_guarded, implementation, work))
        beat = max((info.heartbeat_timeout.total_seconds() / 3) if info.heartbeat_timeout else 5.0, 0.2)
        await _heartbeat_until_done(thread, beat, work, stop=inspect.iscoroutinefunction(implementation))
        error = thread.result()
        if isinstance(error, MetadbUnavailable):
            # Ride out a metadb restart or failover within this attempt, so that the next attempt finds
            # it back instead of every attempt failing in a row.
            work.say(f"{error}; waiting up to {METADB_WAIT_SECONDS:.0f}s for the metadb before the next attempt")
            waiting = asyncio.ensure_future(asyncio.to_thread(_wait_for_metadb, runtime.db, work.cancelled))
            await _heartbeat_until_done(waiting, beat, work, stop=False)
        if error is not None:
            what, node = _node_of(work)
            failed = to_application_error(error, what=what, node=node, log=work.log)
            # The next attempt, if any, says why this one ended: a partition the subtask rode out shows
            # in its log, not only in the attempt count.
            if isinstance(failed, ApplicationError) and not failed.non_retryable:
                work.keep_progress(**{LAST_FAILURE: f"{failed.type}: {failed.message}"})
            raise failed
        return SubtaskResult(log=work.log, context=work.context)

    return run


# The progress key under which a failed attempt leaves its error for the next attempt's log.
LAST_FAILURE = "last_failure"

# How long one attempt waits for an unavailable metadb to answer again.
METADB_WAIT_SECONDS = 120.0


async def heartbeat_until_done(
    future: asyncio.Future[Any],
    beat: float,
    *,
    details: Callable[[], Any] | None = None,
    on_cancel: Callable[[], Any] | None = None,
) -> None:
    """Heartbeat (with `details()`, if given) every `beat` seconds until `future` is done. When the
    activity is cancelled, call `on_cancel` and wait for `future` to end, so nothing runs on behind
    our back."""
    try:
        while not (await asyncio.wait({future}, timeout=beat))[0]:
            if details is None:
                activity.heartbeat()
            else:
                activity.heartbeat(details())
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        await asyncio.wait({future})
        raise


async def _heartbeat_until_done(future: asyncio.Future[Any], beat: float, work: Work, *, stop: bool) -> None:
    """`heartbeat_until_done` for a subtask: the latest log lines go with each heartbeat (a subtask
    that times out still shows what it was doing), and a cancellation lets the work stop at its next
    checkpoint (or cancels it, with `stop`)."""

    def cancel() -> None:
        work.cancelled.set()
        if stop:
            future.cancel()

    await heartbeat_until_done(future, beat, details=work.heartbeat_details, on_cancel=cancel)


def _progress_of(details: Sequence[Any]) -> dict[str, Any]:
    """The progress the previous attempt sent with its last heartbeat ({} if none)."""
    for detail in details:
        if isinstance(detail, dict) and isinstance(detail.get("progress"), dict):
            return dict(detail["progress"])
    return {}


def _wait_for_metadb(db: Database, cancelled: threading.Event) -> bool:
    """Whether the metadb answers again within METADB_WAIT_SECONDS (polled with a growing pause)."""
    deadline = time.monotonic() + METADB_WAIT_SECONDS
    pause = 0.5
    while True:
        db.close()
        try:
            db.check()
            return True
        except MetadbUnavailable:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or cancelled.wait(min(pause, remaining)):
                return False
            pause = min(pause * 2, 5.0)


def _guarded(implementation: Implementation, work: Work) -> BaseException | None:
    try:
        work.check_task()
        implementation(work)
        return None
    except Cancelled:
        return asyncio.CancelledError()
    except BaseException as exc:  # handed back to the event loop and raised there
        return exc
    finally:
        work.close()


async def _guarded_async(implementation: Implementation, work: Work) -> BaseException | None:
    try:
        await asyncio.to_thread(work.check_task)
        await implementation(work)  # type: ignore[misc]
        return None
    except (Cancelled, asyncio.CancelledError):
        return asyncio.CancelledError()
    except Exception as exc:
        return exc
    finally:
        work.close()
