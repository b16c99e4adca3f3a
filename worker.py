"""The ob-takeover worker: runs the takeover workflows and their activities.

Settings come from `contracts.settings` (environment, config file, Temporal's client profiles);
`ob-takeover config show` prints them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker, WorkflowRunner

from activities.registry import build_activities
from activities.runtime import Runtime
from contracts.engine import DEFAULT_TASK_QUEUE
from contracts.settings import Settings, SettingsError, load_settings
from ob_takeover.connection import connect as connect_temporal
from ob_takeover.telemetry import configure_logging, metrics_runtime, serve_worker_http, setup_tracing
from ob_takeover.verify_schedules import keep_schedules
from workflows.fleet import TakeOverFleet
from workflows.precheck import TakeOverPrecheck
from workflows.release import ReleaseCluster
from workflows.sandbox import workflow_runner
from workflows.takeover import SEARCH_ATTRIBUTES, TakeOverCluster
from workflows.verify import VerifyManagedCluster

log = logging.getLogger("ob_takeover.worker")


async def connect(settings: Settings | None = None) -> Client:
    """A client for the configured Temporal server, with the project's encrypting data converter."""
    return await connect_temporal(settings or load_settings())


async def ensure_search_attributes(client: Client) -> None:
    """Register the project's Keyword search attributes where the server lets us; else say how."""
    wanted = {key.name for key in SEARCH_ATTRIBUTES}
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        missing = wanted - set(listed.custom_attributes)
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=client.namespace,
                    search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in sorted(missing)},
                )
            )
            log.info("registered search attributes %s", ", ".join(sorted(missing)))
    except RPCError as exc:
        log.warning(
            "could not check or register search attributes %s (%s); register them as Keyword "
            "on the namespace before starting takeovers",
            ", ".join(sorted(wanted)),
            exc.message,
        )


def build_worker(
    client: Client,
    *,
    activities: Sequence[Callable[..., Any]],
    queue: str = DEFAULT_TASK_QUEUE,
    max_concurrent_activities: int = 100,
    stop_grace: float = 0,
    runner: WorkflowRunner | None = None,
) -> Worker:
    """The worker for the takeover workflows; tests pass their own activities and task queue, benchmarks
    their own workflow runner."""
    size_thread_pool(max_concurrent_activities)
    return Worker(
        client,
        task_queue=queue,
        workflows=[TakeOverCluster, TakeOverPrecheck, TakeOverFleet, ReleaseCluster, VerifyManagedCluster],
        workflow_runner=runner or workflow_runner(),
        activities=list(activities),
        max_concurrent_activities=max_concurrent_activities,
        # When a worker dies, its workflows' next tasks move to another worker after this long.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=3),
        # On stop, running activities get this long to finish before they are cancelled; a cancelled
        # subtask is retried by the next worker (every subtask is idempotent).
        graceful_shutdown_timeout=timedelta(seconds=stop_grace),
    )


# Threads beyond the activities the worker accepts: the metadb, the codec and the HTTP port also use them.
SPARE_THREADS = 16


def size_thread_pool(max_concurrent_activities: int) -> None:
    """Give the running event loop a thread pool as large as the work the worker accepts. Subtasks run
    their blocking SQL, SSH set-up and metadb calls there (`asyncio.to_thread`); asyncio's default pool has
    min(32, cores + 4) threads, so on a small machine a few long calls would make every other subtask wait
    for a thread while its timeout runs."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    wanted = max_concurrent_activities + SPARE_THREADS
    if getattr(loop, "_ob_takeover_threads", 0) >= wanted:
        return
    loop.set_default_executor(ThreadPoolExecutor(max_workers=wanted, thread_name_prefix="ob-takeover"))
    loop._ob_takeover_threads = wanted  # type: ignore[attr-defined]


async def serve(worker: Worker) -> None:
    """Run until SIGTERM or SIGINT, then stop taking tasks and let running activities finish."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        log.info("worker polling task queue %s", worker.task_queue)
        await stop.wait()
        log.info("stopping: finishing running activities")


def quiet_libraries(level: str) -> None:
    """Library chatter (asyncssh logs every channel) stays at WARNING unless DEBUG is asked for."""
    if level != "DEBUG":
        for name in ("asyncssh", "uvicorn", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)


async def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
        log.error("cannot start: %s", exc)
        sys.exit(2)
    configure_logging(settings)
    quiet_libraries(settings.log_level)
    try:
        runtime = Runtime.from_settings(settings)
    except Exception as exc:  # a clear start-up error: metadb unreachable, wrong master key
        log.error("cannot start: %s", exc)
        sys.exit(2)
    log.info("metadb %s ready", runtime.db.url)
    metrics = metrics_runtime() if settings.metrics_listen else None
    try:
        client = await connect_temporal(
            settings,
            runtime=metrics.runtime if metrics else None,
            interceptors=setup_tracing(settings, "ob-takeover-worker"),
        )
    except Exception as exc:  # a bad codec key or an unreachable Temporal server, said once and clearly
        log.error("cannot start: %s", exc)
        sys.exit(2)
    await ensure_search_attributes(client)
    worker = build_worker(
        client,
        activities=build_activities(runtime),
        queue=settings.task_queue,
        stop_grace=settings.stop_grace,
        runner=workflow_runner(settings.workflow_sandbox),
    )
    http = None
    if metrics is not None:
        try:
            http = await serve_worker_http(
                settings.metrics_listen, metrics, client, runtime.db, verify_interval=settings.verify_interval
            )
        except OSError as exc:
            log.error("cannot start: metrics_listen %s: %s", settings.metrics_listen, exc.strerror)
            sys.exit(2)
    # Every managed cluster verified at an interval: its schedule kept in step with the metadb.
    stop_schedules = asyncio.Event()
    schedules = asyncio.create_task(
        keep_schedules(
            client,
            runtime.db,
            task_queue=settings.task_queue,
            interval=settings.verify_interval,
            every=settings.verify_reconcile_seconds,
            stop=stop_schedules,
        )
    )
    try:
        await serve(worker)
    finally:
        stop_schedules.set()
        await schedules
        await runtime.pools.close()
        if http is not None:
            await http.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
    # The worker has stopped cleanly. Skip the interpreter's teardown: the SDK's native threads can
    # abort it ("PyGILState_Release ... must be current", temporalio/sdk-python#300), turning a clean
    # stop into exit code 134 for the supervisor.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
