"""Metrics, traces, JSON logs and health of the worker, as a platform team plugs them in.

A real worker (in this process, with its own Temporal runtime exporting Prometheus metrics) takes a
simulated cluster over; one subtask fails and the operator retries it. The worker's HTTP port answers
`/metrics` with the counts that happened, `/healthz` and `/readyz`; an in-memory span exporter sees the
takeover as one trace with SQL and SSH children and no secret in any attribute; JSON log lines carry the ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from activities.registry import build_activities
from contracts.errors import ClusterSqlError
from contracts.log_context import bound_log_context
from contracts.settings import load_settings
from ob_takeover.codec import data_converter
from ob_takeover.telemetry import (
    ContextFilter,
    JsonFormatter,
    build_tracer_provider,
    metrics_runtime,
    serve_worker_http,
)
from tests.support.driver import start, update, wait_for
from tests.support.mariadb import free_port
from tests.support.prometheus import sample
from tests.support.simulator import Simulation, sim_runtime, simulation, takeover_body
from worker import build_worker

SPANS = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> Iterator[None]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(provider)
    yield


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulation]:
    with simulation(tmp_path / "sim", zones=1, servers_per_zone=1) as running:
        yield running


async def get(url: str) -> requests.Response:
    """A GET from another thread: the worker's HTTP port runs on this test's event loop."""
    return await asyncio.to_thread(requests.get, url, timeout=10)


async def test_metrics_traces_and_health_of_a_takeover_with_a_retried_subtask(
    client: Client, task_queue: str, tmp_path: Path, sim: Simulation
) -> None:
    runtime = sim_runtime(tmp_path, sim)
    metrics = metrics_runtime()
    worker_client = await Client.connect(
        client.service_client.config.target_host,
        namespace=client.namespace,
        runtime=metrics.runtime,
        data_converter=data_converter(),
        interceptors=[TracingInterceptor()],
    )
    listen = f"127.0.0.1:{free_port()}"
    http = await serve_worker_http(listen, metrics, worker_client, runtime.db)
    sim.fault("RUN JOB", error=1235, message="not supported")
    SPANS.clear()
    try:
        assert (await get(f"http://{listen}/healthz")).json() == {"status": "ok"}
        ready = await get(f"http://{listen}/readyz")
        assert ready.status_code == 200 and ready.json() == {"ready": True, "temporal": "ok", "metadb": "ok"}
        async with build_worker(worker_client, activities=build_activities(runtime), queue=task_queue):
            handle = await start(worker_client, task_queue, takeover_body(sim, runtime))
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=60)
            assert task.status.value == "FAILED"
            await update(handle, "retry")
            assert (await handle.result()).status.value == "SUCCESSFUL"
            page = (await get(f"http://{listen}/metrics")).text
    finally:
        await http.cleanup()
    io = {"subtask": "Run io calibration"}
    assert sample(page, "ob_takeover_subtasks_total", **io, outcome="failed") == 1
    assert sample(page, "ob_takeover_subtasks_total", **io, outcome="completed") == 1
    assert sample(page, "ob_takeover_subtasks_total", subtask="Create default user", outcome="completed") == 1
    assert sample(page, "ob_takeover_subtask_attempts_count", **io) == 1
    # Temporal's attempts of the run that completed: the operator's retry is a new run, counted below.
    assert sample(page, "ob_takeover_subtask_attempts_sum", **io) == 1
    assert sample(page, "ob_takeover_subtask_duration_seconds_count", **io) == 2
    assert sample(page, "ob_takeover_subtask_duration_seconds_bucket", **io, le="+Inf") == 2
    assert sample(page, "ob_takeover_errors_total", component="cluster", type="ClusterSqlError") == 1
    assert sample(page, "ob_takeover_operations_total", kind="retry", outcome="accepted") == 1
    # The SDK's own metrics come through the same page.
    assert sample(page, "temporal_activity_schedule_to_start_latency_count") > 0
    assert "ob_takeover_cluster_lock_age_seconds 0.0" in page
    # Nothing in the page names a password or a workflow id (labels are bounded).
    assert sim.root_password not in page and handle.id not in page

    spans = SPANS.get_finished_spans()
    names = {span.name for span in spans}
    assert "StartWorkflow:TakeOverCluster" in names and "RunActivity:create_default_user" in names
    assert {"SQL CREATE", "SQL ALTER", "SQL GRANT", "SQL SELECT"} <= names
    assert any(name.startswith("SSH ") for name in names)
    # One trace, from the start through the activities to the statements.
    start_span = next(span for span in spans if span.name == "StartWorkflow:TakeOverCluster")
    sql_spans = [span for span in spans if span.name.startswith("SQL ")]
    assert sql_spans and all(span.context.trace_id == start_span.context.trace_id for span in sql_spans)
    attributes = json.dumps([dict(span.attributes or {}) for span in spans], default=str)
    assert sim.root_password not in attributes and "IDENTIFIED" not in attributes


@pytest.mark.unit
def test_json_log_lines_carry_the_ids(caplog: pytest.LogCaptureFixture) -> None:
    formatter = JsonFormatter()
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO, logger="ob_takeover.activities"):
        with bound_log_context(taskId=7, subtaskId=700004, workflowId="takeover-127.0.0.1-2881", cluster="c:1"):
            logging.getLogger("ob_takeover.activities").info("task 7 subtask 700004: monitor user created")
        logging.getLogger("ob_takeover.activities").info("outside any task")
    inside, outside = (json.loads(formatter.format(record)) for record in caplog.records)
    assert inside["taskId"] == 7 and inside["subtaskId"] == 700004 and inside["cluster"] == "c:1"
    assert inside["workflowId"] == "takeover-127.0.0.1-2881" and inside["level"] == "INFO"
    assert "taskId" not in outside and outside["message"] == "outside any task"


@pytest.mark.unit
def test_the_log_format_is_a_setting() -> None:
    assert load_settings({}).log_format == "human"
    assert load_settings({"OB_TAKEOVER_LOG_FORMAT": "json"}).log_format == "json"


@pytest.mark.unit
def test_exported_spans_carry_no_stack_trace_and_only_readable_error_messages() -> None:
    """As in Temporal: a project error's message stays readable; anything else (a driver's error quoting a
    statement, say) leaves only its type name, and no exception leaves its stack trace."""
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(exporter, "ob-takeover-test")
    tracer = provider.get_tracer("test")
    secret = "IDENTIFIED BY 'S3cret-pw!'"
    readable = ClusterSqlError("OceanBase error 1064 in `ALTER …`: syntax error", node="127.0.0.1:2881")
    with pytest.raises(RuntimeError), tracer.start_as_current_span("SQL CREATE"):
        raise RuntimeError(f"You have an error in your SQL syntax near 'CREATE USER monitor {secret}'")
    with pytest.raises(ClusterSqlError), tracer.start_as_current_span("SQL ALTER"):
        raise readable
    provider.force_flush()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    provider.shutdown()

    unclassified = spans["SQL CREATE"]
    (event,) = unclassified.events
    assert event.name == "exception" and dict(event.attributes or {}) == {
        "exception.type": "RuntimeError",
        "exception.escaped": "False",
    }
    assert unclassified.status.status_code == StatusCode.ERROR and unclassified.status.description == "RuntimeError"
    assert "S3cret-pw!" not in unclassified.to_json() and "Traceback" not in unclassified.to_json()

    project = spans["SQL ALTER"]
    (event,) = project.events
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "contracts.errors.ClusterSqlError"
    assert (
        attributes["exception.message"]
        == str(readable)
        == "127.0.0.1:2881: OceanBase error 1064 in `ALTER …`: syntax error"
    )
    assert "exception.stacktrace" not in attributes and "Traceback" not in project.to_json()
    assert project.status.description == f"ClusterSqlError: {readable}"
