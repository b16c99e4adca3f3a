"""Metrics, traces, logs and health for the worker and the HTTP service.

- **Metrics.** The worker's Temporal runtime exports the SDK's own metrics (polls, schedule-to-start
  latency, slots) and the product's (`ob_takeover_*`, recorded through the SDK's metric meter by the
  activities and the workflows) with Prometheus, on an internal loopback port. The worker's HTTP port
  (`metrics_listen`) serves them at `/metrics` with the gauges read at scrape time (takeovers by status,
  cluster locks and their age), and `/healthz` and `/readyz`.
- **Traces.** OpenTelemetry through the SDK's tracing interceptor, with child spans for SQL statements (verb
  only) and SSH commands (program only); exported with OTLP when `otlp_endpoint` is set, else not at all.
  Exported spans carry no stack trace, and an exception's message only for the project's own errors
  (`RedactingSpanExporter`), as Temporal keeps them readable and encrypts the rest (`ob_takeover.codec`).
- **Logs.** Human lines by default; with `log_format = "json"`, one JSON object a line carrying the task,
  subtask, workflow, cluster and trace ids of the work it belongs to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from contracts.engine import TAKEOVER_WORKFLOW, TASK_STATUS_ATTRIBUTE
from contracts.errors import READABLE_FAILURE_TYPES, TakeoverError
from contracts.log_context import log_context
from contracts.settings import Settings
from contracts.task_view import TaskStatus
from metadb import clusters, locks, verifications
from metadb.db import Database

log = logging.getLogger("ob_takeover.telemetry")

# Histogram buckets (seconds) of the product's durations: a quick SQL subtask to a long io calibration.
DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]
ATTEMPT_BUCKETS = [1, 2, 3, 5, 10, 20]


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class MetricsRuntime:
    """A Temporal runtime that exports metrics with Prometheus at `internal` (loopback)."""

    runtime: Runtime
    internal: str


def metrics_runtime() -> MetricsRuntime:
    internal = f"127.0.0.1:{_free_loopback_port()}"
    config = PrometheusConfig(
        bind_address=internal,
        durations_as_seconds=True,
        histogram_bucket_overrides={
            "ob_takeover_subtask_duration_seconds": DURATION_BUCKETS,
            "ob_takeover_subtask_attempts": ATTEMPT_BUCKETS,
        },
    )
    return MetricsRuntime(Runtime(telemetry=TelemetryConfig(metrics=config)), internal)


# --- gauges read at scrape time ----------------------------------------------------------------------


class _ScrapeGauges(Collector):
    """Takeovers by task status (Temporal visibility) and the cluster locks (metadb), read per scrape."""

    def __init__(self, counts: dict[str, int], lock_ages: list[float]) -> None:
        self._counts = counts
        self._lock_ages = lock_ages

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_status = GaugeMetricFamily("ob_takeover_takeovers", "Takeover tasks by OCP task status", labels=["status"])
        for status, count in sorted(self._counts.items()):
            by_status.add_metric([status], count)
        yield by_status
        yield GaugeMetricFamily("ob_takeover_cluster_locks", "Cluster locks held", value=len(self._lock_ages))
        yield GaugeMetricFamily(
            "ob_takeover_cluster_lock_age_seconds",
            "Age of the oldest cluster lock (0 without locks)",
            value=max(self._lock_ages, default=0.0),
        )


async def _takeover_counts(client: Client) -> dict[str, int]:
    counts = {}
    for status in TaskStatus:
        query = f"WorkflowType = '{TAKEOVER_WORKFLOW}' AND {TASK_STATUS_ATTRIBUTE} = '{status.value}'"
        counts[status.value] = (await client.count_workflows(query)).count
    return counts


def _lock_ages(db: Database) -> list[float]:
    now = datetime.now(UTC)
    ages = []
    for row in locks.list_locks(db):
        try:
            locked = datetime.fromisoformat(str(row["locked_at"]))
        except ValueError:
            continue
        ages.append(max((now - locked.astimezone(UTC)).total_seconds(), 0.0))
    return ages


async def scrape_gauges(client: Client, db: Database) -> bytes:
    """The scrape-time gauges in Prometheus's text format; a source that does not answer is left out."""
    counts: dict[str, int] = {}
    ages: list[float] = []
    try:
        counts = await asyncio.wait_for(_takeover_counts(client), 5)
    except Exception as exc:  # visibility without the search attribute, or Temporal away: no gauge
        log.debug("takeover counts unavailable: %s", exc)
    try:
        ages = await asyncio.to_thread(_lock_ages, db)
    except Exception as exc:
        log.debug("cluster locks unavailable: %s", exc)
    registry = CollectorRegistry()
    registry.register(_ScrapeGauges(counts, ages))
    return generate_latest(registry)


# --- the worker's HTTP port ----------------------------------------------------------------------------


def stale_verifications(db: Database, interval: float, now: float | None = None) -> list[dict[str, object]]:
    """The managed clusters whose latest verification is older than twice `interval` (or that have none
    though managed for that long): their schedule is paused or missing, or verifications fail."""
    moment = time.time() if now is None else now
    checked = verifications.last_checked(db)
    stale: list[dict[str, object]] = []
    for row in clusters.list_clusters(db):
        if row["status"] != clusters.RUNNING:
            continue
        cluster_id = int(row["id"])
        last = checked.get(cluster_id)
        since = last or _created_at(db, cluster_id)
        if since is None or moment - datetime.fromisoformat(since).timestamp() > 2 * interval:
            stale.append({"clusterId": cluster_id, "cluster": row["name"], "lastVerified": last})
    return stale


def _created_at(db: Database, cluster_id: int) -> str | None:
    record = clusters.get_cluster(db, cluster_id)
    return str(record["updated_at"]) if record and record.get("updated_at") else None


async def serve_worker_http(
    listen: str, metrics: MetricsRuntime, client: Client, db: Database, *, verify_interval: float | None = None
) -> web.AppRunner:
    """`/metrics` (the SDK's and the product's, and the scrape-time gauges), `/healthz` (the process
    answers) and `/readyz` (Temporal and the metadb answer) on `listen` (host:port)."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def metrics_page(_: web.Request) -> web.Response:
        try:
            async with session.get(f"http://{metrics.internal}/metrics") as answer:
                exported = await answer.read()
        except aiohttp.ClientError:
            exported = b""
        body = exported.rstrip(b"\n") + b"\n" + await scrape_gauges(client, db)
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(client.service_client.check_health(), 5)
            checks["temporal"] = "ok"
        except Exception as exc:
            checks["temporal"] = f"unavailable: {type(exc).__name__}"
        try:
            await asyncio.wait_for(asyncio.to_thread(db.check), 5)
            checks["metadb"] = "ok"
        except Exception as exc:
            checks["metadb"] = f"unavailable: {type(exc).__name__}"
        ready = all(value == "ok" for value in checks.values())
        details: dict[str, object] = {}
        if verify_interval is not None and checks["metadb"] == "ok":
            # A detail, not a readiness failure: the worker serves; the schedules or the clusters need a look.
            details["stale_verifications"] = await asyncio.to_thread(stale_verifications, db, verify_interval)
        return web.json_response({"ready": ready, **checks, **details}, status=200 if ready else 503)

    async def close_session(_: web.Application) -> None:
        await session.close()

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.on_cleanup.append(close_session)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port)).start()
    log.info("metrics and health on http://%s (/metrics, /healthz, /readyz)", listen)
    return runner


# --- traces ---------------------------------------------------------------------------------------------

# The attributes of a span event named "exception" (OpenTelemetry's semantic conventions).
_EXCEPTION_EVENT = "exception"
_EXCEPTION_TYPE = "exception.type"
_EXCEPTION_MESSAGE = "exception.message"
_EXCEPTION_STACKTRACE = "exception.stacktrace"


def _readable(exception_type: str) -> bool:
    """Whether an `exception.type` (`module.Class`, as the SDK records it) names one of the project's errors
    whose messages are built never to carry a secret. Any other exception, Temporal's `ApplicationError`
    included (its `type` is not recorded on the span), counts as unclassified."""
    module, _, name = exception_type.rpartition(".")
    return module == TakeoverError.__module__ and name in READABLE_FAILURE_TYPES


class _RedactedSpan(ReadableSpan):
    """A copy of a finished span with other events and status, and the original's counts of dropped items."""

    def __init__(self, span: ReadableSpan, events: Sequence[Event], status: Status) -> None:
        super().__init__(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=span.attributes,
            events=events,
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        self._original = span

    @property
    def dropped_attributes(self) -> int:
        return self._original.dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._original.dropped_events

    @property
    def dropped_links(self) -> int:
        return self._original.dropped_links


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """`span` without stack traces, and without the messages of exceptions that are not the project's
    readable errors: those keep their type name only, in the "exception" event and the status alike."""
    exceptions = [event for event in span.events if event.name == _EXCEPTION_EVENT]
    if not exceptions and not span.status.description:
        return span
    events = []
    for event in span.events:
        if event.name == _EXCEPTION_EVENT:
            attributes = dict(event.attributes or {})
            attributes.pop(_EXCEPTION_STACKTRACE, None)
            if not _readable(str(attributes.get(_EXCEPTION_TYPE, ""))):
                attributes.pop(_EXCEPTION_MESSAGE, None)
            event = Event(event.name, attributes, event.timestamp)
        events.append(event)
    return _RedactedSpan(span, events, _redacted_status(span.status, exceptions))


def _redacted_status(status: Status, exceptions: Sequence[Event]) -> Status:
    """A status description ("Type: message", as the SDK and Temporal's interceptor write it) kept whole for a
    recorded readable error, cut to the type name for another recorded exception, and dropped otherwise."""
    description = status.description
    if not description:
        return status
    for event in exceptions:
        attributes = event.attributes or {}
        exception_type = str(attributes.get(_EXCEPTION_TYPE, ""))
        name = exception_type.rpartition(".")[2]
        if _readable(exception_type) and description == f"{name}: {attributes.get(_EXCEPTION_MESSAGE, '')}":
            return status
        if name and (description == name or description.startswith(f"{name}:")):
            return Status(status.status_code, name)
    return Status(status.status_code)


class RedactingSpanExporter(SpanExporter):
    """Exports through `exporter` the spans as `redact_span` leaves them: a finished span cannot be changed,
    so the copies are exported instead."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([redact_span(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def build_tracer_provider(exporter: SpanExporter, service_name: str) -> TracerProvider:
    """A tracer provider for `service_name` that exports its spans in batches through `exporter`, redacted."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(exporter)))
    return provider


def setup_tracing(settings: Settings, service_name: str) -> list[TracingInterceptor]:
    """Export spans with OTLP when `otlp_endpoint` is set (nothing is sent otherwise); the interceptor that
    makes a takeover one trace, from the client's start through every activity."""
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")
        trace.set_tracer_provider(
            build_tracer_provider(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"), service_name)
        )
        log.info("traces exported with OTLP to %s", endpoint)
    return [TracingInterceptor()]


# --- logs -----------------------------------------------------------------------------------------------


class ContextFilter(logging.Filter):
    """Puts the ids of the work a record is written in (and its trace id) on the record, when it is made."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = dict(log_context.get())
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            fields.setdefault("traceId", f"{span.trace_id:032x}")
        record.ob_takeover = fields
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the ids of the work it belongs to (put
    there by `ContextFilter`)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "ob_takeover", {}))
        temporal = getattr(record, "temporal_activity", None) or getattr(record, "temporal_workflow", None)
        if isinstance(temporal, dict) and "workflow_id" in temporal:
            line.setdefault("workflowId", temporal["workflow_id"])
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(settings: Settings) -> None:
    """The root logger as the settings say: human lines, or JSON lines."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
