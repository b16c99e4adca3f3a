"""Metrics, traces, logs and health for the worker and the HTTP service.

- **Metrics.** The worker's Temporal runtime exports the SDK's own metrics (polls, schedule-to-start
  latency, slots) and the product's (`ob_takeover_*`, recorded through the SDK's metric meter by the
  activities and the workflows) with Prometheus, on an internal loopback port. The worker's HTTP port
  (`metrics_listen`) serves them at `/metrics` with the gauges read at scrape time (takeovers by status,
  cluster locks and their age), and `/healthz` and `/readyz`.
- **Traces.** OpenTelemetry through the SDK's tracing interceptor, with child spans for SQL statements (verb
  only) and SSH commands (program only); exported with OTLP when `otlp_endpoint` is set, else not at all.
- **Logs.** Human lines by default; with `log_format = "json"`, one JSON object a line carrying the task,
  subtask, workflow, cluster and trace ids of the work it belongs to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry import trace
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from contracts.engine import TAKEOVER_WORKFLOW, TASK_STATUS_ATTRIBUTE
from contracts.log_context import log_context
from contracts.settings import Settings
from contracts.task_view import TaskStatus
from metadb import locks
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


async def serve_worker_http(listen: str, metrics: MetricsRuntime, client: Client, db: Database) -> web.AppRunner:
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
        return web.json_response({"ready": ready, **checks}, status=200 if ready else 503)

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


def setup_tracing(settings: Settings, service_name: str) -> list[TracingInterceptor]:
    """Export spans with OTLP when `otlp_endpoint` is set (nothing is sent otherwise); the interceptor that
    makes a takeover one trace, from the client's start through every activity."""
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        endpoint = settings.otlp_endpoint.rstrip("/")
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
        trace.set_tracer_provider(provider)
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
