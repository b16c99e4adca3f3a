"""The HTTP service (`ob-takeover serve`): OCP's REST API and the config server on one FastAPI application,
the payload codec on another, each on its own listener.

- `/api/v2/…`: OCP's REST API (`ob_takeover.api.routes`), HTTP Basic with the metadb's users;
  `GET /api/v2/openapi.json` and the browsable `GET /api/v2/docs`.
- `GET /services?Action=ObRootServiceInfo&ObCluster=<name>[&ObClusterId=<id>]`: the config server that
  taken-over clusters point at, anonymous (observers call it), in ob-configserver's shape, from the
  metadb; `&version=2` without a cluster name lists every cluster.
- On a listener of its own (`create_codec_app`): `POST /codec/encode`, `POST /codec/decode` with
  `{"payloads": [...]}` (Temporal's JSON form of Payloads), so `temporal … --codec-endpoint
  http://host:port/codec` and the Temporal UI show decoded payloads, secrets masked; cross-origin calls
  from the `codec_cors_origins` setting; a token when `codec_token` is set.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from temporalio.api.common.v1 import Payload, Payloads

from contracts.errors import CodecKeyError
from contracts.log_context import bound_log_context
from contracts.request import InvalidRequest
from metadb import clusters
from metadb.db import Database
from metadb.users import TASK_VIEWER
from ob_takeover.api.auth import require
from ob_takeover.api.document import api_document, api_routes
from ob_takeover.api.envelope import ApiError, failure, invalid
from ob_takeover.api.routes import API, Services, router
from ob_takeover.api.routes.system import DOCS_ASSETS
from ob_takeover.api.takeover_body import rejected_fields
from ob_takeover.codec import EncryptionCodec

log = logging.getLogger("ob_takeover.service")
_tracer = trace.get_tracer("ob_takeover.http")


def _envelope(data: Any, code: int = 200, message: str = "successful") -> dict[str, Any]:
    return {"Code": code, "Message": message, "Success": code == 200, "Data": data, "Server": "ob-takeover"}


def root_service_info(record: dict[str, Any]) -> dict[str, Any]:
    """ob-configserver's ObRootServiceInfo for one cluster record."""
    attributes = record.get("attributes") or {}
    regions = attributes.get("regions") or ["sys_region"]
    return {
        "ObClusterId": int(record["ob_cluster_id"]),
        "ObRegionId": int(record["ob_cluster_id"]),
        "ObCluster": record["name"],
        "ObRegion": regions[0],
        "RsList": record.get("rs_list") or [],
        "ReadonlyRsList": [],
        "Type": "PRIMARY",
        "timestamp": int(time.time() * 1_000_000),
    }


def _services_answer(db: Database, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The config server's answer for the one cluster asked for (anonymous callers never get a list of every
    cluster, nor make the service read every one)."""
    action = query.get("Action", "")
    if action != "ObRootServiceInfo":
        return 400, _envelope(None, 400, f"unsupported Action '{action}'")
    name = query.get("ObCluster")
    cluster_id = query.get("ObClusterId")
    if not name:
        return 400, _envelope(None, 400, "ObCluster is required")
    matches = [
        record
        for record in clusters.clusters_named(db, name)
        if record.get("rs_list") and (cluster_id is None or str(record["ob_cluster_id"]) == cluster_id)
    ]
    if not matches:
        wanted = name + (f" (id {cluster_id})" if cluster_id else "")
        return 404, _envelope(None, 404, f"cluster {wanted} not found")
    if query.get("version") == "2":
        return 200, _envelope([root_service_info(r) for r in matches])
    return 200, _envelope(root_service_info(matches[0]))


def create_app(db: Database, *, services: Services | None = None, config_server: bool = True) -> FastAPI:
    """The service's application: OCP's REST API (with `services`), its document and page (for a viewer),
    the probes and metrics, and the config server (unless `config_server` is False: it has a listener of
    its own, `create_config_app`)."""
    app = FastAPI(
        title="ob-takeover",
        summary="OCP's takeover API on Temporal",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    registry = CollectorRegistry()
    _trace_requests(app, registry)
    _answer_errors_in_envelope(app)
    if config_server:
        _serve_config_server(app, db)
    _serve_probes(app, registry, services)
    if services is not None:
        app.include_router(router)
        app.openapi = functools.partial(api_document, app)  # type: ignore[method-assign]
        app.mount(DOCS_ASSETS, StaticFiles(directory=str(resources.files("fastapi_offline") / "static")))
    return app


def create_config_app(db: Database) -> FastAPI:
    """The config server alone, for a listener of its own (observers fetch it over plain HTTP)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    _serve_config_server(app, db)
    return app


def _trace_requests(app: FastAPI, registry: CollectorRegistry) -> None:
    """Every request gets a trace id (in its log context, its span and its `X-Trace-Id` header), counts in
    `registry`'s metrics, and an API request a log line."""
    requests_total = Counter(
        "ob_takeover_http_requests", "HTTP requests by route, method and status", ["route", "method", "status"],
        registry=registry,
    )  # fmt: skip
    latency = Histogram(
        "ob_takeover_http_request_duration_seconds", "HTTP request latency by route", ["route", "method"],
        registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )  # fmt: skip

    @app.middleware("http")
    async def trace(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request.state.trace_id = uuid.uuid4().hex[:16]
        request.state.began = time.monotonic()
        request.state.user = "-"
        with (
            bound_log_context(traceId=request.state.trace_id),
            _tracer.start_as_current_span(
                f"HTTP {request.method}", attributes={"ocp.trace_id": request.state.trace_id}
            ),
        ):
            response = await call_next(request)
        # The route's template, not the path: ids in paths would make the labels unbounded.
        route = getattr(request.scope.get("route"), "path", "unmatched")
        requests_total.labels(route, request.method, str(response.status_code)).inc()
        latency.labels(route, request.method).observe(time.monotonic() - request.state.began)
        response.headers["X-Trace-Id"] = request.state.trace_id
        if request.url.path.startswith(API) or request.url.path.startswith("/task/"):
            log.info(
                "%s %s -> %d in %d ms, user %s, trace %s",
                request.method,
                request.url.path,
                response.status_code,
                int((time.monotonic() - request.state.began) * 1000),
                request.state.user,
                request.state.trace_id,
            )
        return response


def _answer_errors_in_envelope(app: FastAPI) -> None:
    """Every error as OCP's error envelope: the API's own, bad parameters, unknown endpoints, and (logged
    with its trace id) anything unexpected."""

    def envelope_of(request: Request, error: ApiError) -> Response:
        return failure(error, trace_id=request.state.trace_id, began=request.state.began)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return envelope_of(request, error)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, error: RequestValidationError) -> Response:
        return envelope_of(request, invalid(error.errors(), skip=1))

    @app.exception_handler(InvalidRequest)
    async def invalid_request(request: Request, error: InvalidRequest) -> Response:
        return envelope_of(request, rejected_fields(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        message = {404: f"no such endpoint: {request.method} {request.url.path}"}.get(error.status_code, error.detail)
        headers = dict(error.headers or {})
        if error.status_code == 405:  # every method the path takes, whichever route of it matched
            methods = {
                m for r in api_routes(app.routes) if r.path_regex.match(request.url.path) for m in r.methods or ()
            }
            headers["Allow"] = ", ".join(sorted(methods))
        return envelope_of(request, ApiError(error.status_code, str(message), headers=headers))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("trace %s: %s %s failed", request.state.trace_id, request.method, request.url.path)
        return envelope_of(
            request, ApiError(500, f"internal error ({type(error).__name__}); trace {request.state.trace_id}")
        )


def _serve_config_server(app: FastAPI, db: Database) -> None:
    """The config server from `db`, anonymous and left out of the API's document (observers call it)."""

    @app.get("/services", include_in_schema=False)
    async def config_server(request: Request) -> JSONResponse:
        status, body = await asyncio.to_thread(_services_answer, db, dict(request.query_params))
        return JSONResponse(body, status_code=status)


def _serve_probes(app: FastAPI, registry: CollectorRegistry, services: Services | None) -> None:
    """The health probe (anonymous) and `registry`'s metrics: anonymous from loopback (a sidecar, a local
    Prometheus), a viewer's elsewhere."""

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def ready() -> JSONResponse:
        """Ready to serve: the metadb answers and Temporal is connected (a load balancer's and Kubernetes'
        readiness probe); 503 naming what is missing otherwise."""
        if services is None:
            return JSONResponse({"status": "ready"})
        problems = []
        try:
            await services.metadb(services.db.check)
        except Exception as exc:
            problems.append(f"metadb: {type(exc).__name__}")
        try:
            await services.temporal()
        except ApiError:
            problems.append("temporal: unreachable")
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        client = request.client.host if request.client else ""
        if not _loopback(client):
            if services is None:
                raise ApiError(403, "metrics are served to loopback callers only")
            user = await services.auth.user(request.headers.get("Authorization"), client)
            require(user, TASK_VIEWER)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


# Fields whose values the codec's decode answer masks: decoding for display never needs a secret.
SECRET_KEY = re.compile(r"password|passwd|passphrase|secret|private_?key|token", re.IGNORECASE)
MASK = "******"


def mask_secrets(value: Any) -> Any:
    """`value` (decoded JSON) with the values of secret-looking fields replaced by ******."""
    if isinstance(value, dict):
        return {k: MASK if SECRET_KEY.search(str(k)) and v is not None else mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def _masked(payload: Payload) -> Payload:
    if payload.metadata.get("encoding") != b"json/plain":
        return payload
    try:
        value = json.loads(payload.data)
    except ValueError:
        return payload
    return Payload(metadata=payload.metadata, data=json.dumps(mask_secrets(value), separators=(",", ":")).encode())


# A 300-server task's JSON is ~750 KB, base64-grown in the codec's body: room for far larger ones, not for a flood.
CODEC_BODY_LIMIT = 16 << 20


def create_codec_app(codec: EncryptionCodec, *, cors_origins: str = "", token: str | None = None) -> FastAPI:
    """The payload codec for the Temporal UI and CLI, on a listener of its own: `POST /codec/encode` and
    `POST /codec/decode` with `{"payloads": [...]}`. With `token`, a call must send it as its
    `Authorization` header (the `temporal` CLI's `--codec-auth`). Decoded answers mask secret fields:
    workers decode in process with the key and never ask here."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    allowed = {origin.strip() for origin in cors_origins.split(",") if origin.strip()}

    @app.middleware("http")
    async def cors_and_token(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            response: Response = Response(status_code=204)
        elif token is not None and not _token_matches(request.headers.get("Authorization", ""), token):
            response = JSONResponse({"error": "the codec needs its token in the Authorization header"}, status_code=401)
        else:
            response = await call_next(request)
        # Only origins named in the settings, never any origin: the answers carry decoded payloads.
        if origin and origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-Namespace, Authorization"
            response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    async def convert(request: Request, encode: bool) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > CODEC_BODY_LIMIT:
                limit = f"{CODEC_BODY_LIMIT >> 20} MiB"
                return JSONResponse({"error": f"body larger than {limit}"}, status_code=413)
        try:
            payloads = json_format.Parse(body, Payloads())
            converted = await (codec.encode if encode else codec.decode)(list(payloads.payloads))
        except (json_format.ParseError, CodecKeyError, UnicodeDecodeError, ValueError) as exc:
            message = 'body must be {"payloads": [...]}' if isinstance(exc, json_format.ParseError) else str(exc)
            return JSONResponse({"error": message}, status_code=400)
        if not encode:
            converted = [_masked(payload) for payload in converted]
        return Response(json_format.MessageToJson(Payloads(payloads=converted)), media_type="application/json")

    @app.post("/codec/encode")
    async def encode(request: Request) -> Response:
        return await convert(request, True)

    @app.post("/codec/decode")
    async def decode(request: Request) -> Response:
        return await convert(request, False)

    return app


def _token_matches(header: str, token: str) -> bool:
    given = header.removeprefix("Bearer ").strip().encode()
    return hmac.compare_digest(given, token.encode())


@dataclass
class Running:
    """A service started by `serve`."""

    server: uvicorn.Server
    task: asyncio.Task[None]

    async def cleanup(self) -> None:
        self.server.should_exit = True
        await self.task


# How long a stopping service waits for the requests it is answering.
SHUTDOWN_GRACE_SECONDS = 10


async def serve(
    app: FastAPI, host: str, port: int, *, trusted_proxies: str = "", tls: tuple[str, str] | None = None
) -> Running:
    """`app` on host:port, started; over HTTPS with `tls` (certificate and key files). A client's address is
    the connection's own; `X-Forwarded-For` and `X-Forwarded-Proto` are believed only from `trusted_proxies`
    (comma-separated addresses or networks)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=trusted_proxies or None,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
        # A connection that never finishes (a TLS handshake a plain-HTTP client left open) delays a stop no more.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"the service did not start on {host}:{port}")
        await asyncio.sleep(0.02)
    return Running(server, task)
