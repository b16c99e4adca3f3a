"""The HTTP service (`ob-takeover serve`): OCP's REST API, the config server and the payload codec, on one
FastAPI application.

- `/api/v2/…`: OCP's REST API (`ob_takeover.api.routes`), HTTP Basic with the metadb's users;
  `GET /api/v2/openapi.json` and the browsable `GET /api/v2/docs`.
- `GET /services?Action=ObRootServiceInfo&ObCluster=<name>[&ObClusterId=<id>]`: the config server that
  taken-over clusters point at, anonymous (observers call it), in ob-configserver's shape, from the
  metadb; `&version=2` without a cluster name lists every cluster.
- `POST /codec/encode`, `POST /codec/decode`: `{"payloads": [...]}` (Temporal's JSON form of Payloads),
  so `temporal … --codec-endpoint http://host:port/codec` and the Temporal UI show decoded payloads;
  cross-origin calls are allowed from the `codec_cors_origins` setting.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from starlette.exceptions import HTTPException
from temporalio.api.common.v1 import Payloads

from contracts.settings import Settings
from metadb import clusters
from metadb.db import Database
from ob_takeover.api.envelope import ApiError, SubError, failure
from ob_takeover.api.routes import API, Services, router
from ob_takeover.codec import EncryptionCodec

log = logging.getLogger("ob_takeover.service")


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


def _records(db: Database) -> list[dict[str, Any]]:
    return [r for row in clusters.list_clusters(db) if (r := clusters.get_cluster(db, int(row["id"]))) is not None]


def _services_answer(db: Database, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    action = query.get("Action", "")
    if action != "ObRootServiceInfo":
        return 400, _envelope(None, 400, f"unsupported Action '{action}'")
    name = query.get("ObCluster")
    cluster_id = query.get("ObClusterId")
    records = [r for r in _records(db) if r.get("rs_list")]
    if name is None and query.get("version") == "2":
        return 200, _envelope([root_service_info(r) for r in records])
    if not name:
        return 400, _envelope(None, 400, "ObCluster is required")
    matches = [
        r for r in records if r["name"] == name and (cluster_id is None or str(r["ob_cluster_id"]) == cluster_id)
    ]
    if not matches:
        wanted = name + (f" (id {cluster_id})" if cluster_id else "")
        return 404, _envelope(None, 404, f"cluster {wanted} not found")
    if query.get("version") == "2":
        return 200, _envelope([root_service_info(r) for r in matches])
    return 200, _envelope(root_service_info(matches[0]))


def create_app(
    db: Database,
    codec: EncryptionCodec | None = None,
    *,
    cors_origins: str = "",
    services: Services | None = None,
) -> FastAPI:
    """The service's application; without `services` it serves the config server and the codec only."""
    app = FastAPI(
        title="ob-takeover",
        summary="OCP's takeover API on Temporal",
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
    )
    allowed = {origin.strip() for origin in cors_origins.split(",") if origin.strip()}
    app.state.services = services

    @app.middleware("http")
    async def trace(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request.state.trace_id = uuid.uuid4().hex[:16]
        request.state.began = time.monotonic()
        request.state.user = "-"
        if request.method == "OPTIONS" and request.url.path.startswith("/codec"):
            response: Response = Response(status_code=204)
        else:
            response = await call_next(request)
        response.headers["X-Trace-Id"] = request.state.trace_id
        origin = request.headers.get("Origin")
        if origin and (origin in allowed or "*" in allowed) and request.url.path.startswith("/codec"):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-Namespace, Authorization"
            response.headers["Access-Control-Allow-Credentials"] = "true"
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

    def envelope_of(request: Request, error: ApiError) -> Response:
        return failure(error, trace_id=request.state.trace_id, began=request.state.began)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return envelope_of(request, error)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, error: RequestValidationError) -> Response:
        sub = [
            SubError(field=".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), message=e["msg"])
            for e in error.errors()
        ]
        return envelope_of(request, ApiError(400, "; ".join(f"{s.field}: {s.message}" for s in sub), sub_errors=sub))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        message = {404: f"no such endpoint: {request.method} {request.url.path}"}.get(error.status_code, error.detail)
        return envelope_of(request, ApiError(error.status_code, str(message)))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("trace %s: %s %s failed", request.state.trace_id, request.method, request.url.path)
        return envelope_of(
            request, ApiError(500, f"internal error ({type(error).__name__}); trace {request.state.trace_id}")
        )

    @app.get("/services", include_in_schema=False)
    async def config_server(request: Request) -> JSONResponse:
        status, body = await asyncio.to_thread(_services_answer, db, dict(request.query_params))
        return JSONResponse(body, status_code=status)

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    if codec is not None:

        async def convert(request: Request, encode: bool) -> Response:
            try:
                payloads = json_format.Parse(await request.body(), Payloads())
            except json_format.ParseError:
                return JSONResponse({"error": 'body must be {"payloads": [...]}'}, status_code=400)
            converted = await (codec.encode if encode else codec.decode)(list(payloads.payloads))
            return Response(json_format.MessageToJson(Payloads(payloads=converted)), media_type="application/json")

        @app.post("/codec/encode", include_in_schema=False)
        async def encode(request: Request) -> Response:
            return await convert(request, True)

        @app.post("/codec/decode", include_in_schema=False)
        async def decode(request: Request) -> Response:
            return await convert(request, False)

    if services is not None:
        app.include_router(router)
    return app


@dataclass
class Running:
    """A service started by `serve`."""

    server: uvicorn.Server
    task: asyncio.Task[None]

    async def cleanup(self) -> None:
        self.server.should_exit = True
        await self.task


async def serve(
    db: Database,
    host: str,
    port: int,
    codec: EncryptionCodec | None = None,
    *,
    cors_origins: str | None = None,
    services: Services | None = None,
) -> Running:
    """The service on host:port, started; `cors_origins` (comma-separated) may call the codec (default: the
    setting's default, the local Temporal UI)."""
    if cors_origins is None:
        cors_origins = str(Settings.model_fields["codec_cors_origins"].default)
    app = create_app(db, codec, cors_origins=cors_origins, services=services)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"the service did not start on {host}:{port}")
        await asyncio.sleep(0.02)
    return Running(server, task)
