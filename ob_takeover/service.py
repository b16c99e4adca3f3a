"""The HTTP service (`ob-takeover serve`): the config server that taken-over clusters point at, and
the payload codec server for the Temporal UI and CLI.

`GET /services?Action=ObRootServiceInfo&ObCluster=<name>[&ObClusterId=<id>]` answers with the
cluster's root service list in ob-configserver's shape, from the metadb, so it reflects "Record root
service list"; `&version=2` without a cluster name lists every cluster.

`POST /codec/encode` and `POST /codec/decode` take and return `{"payloads": [...]}` (Temporal's JSON
form of Payloads), so `temporal … --codec-endpoint http://host:port/codec` and the Temporal UI show
decoded payloads. Cross-origin requests are allowed from OB_TAKEOVER_CODEC_CORS_ORIGINS.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from contracts.settings import Settings
from metadb import clusters
from metadb.db import Database
from ob_takeover.codec import EncryptionCodec

METADB_KEY = web.AppKey("metadb", Database)
CODEC_KEY = web.AppKey("codec", EncryptionCodec)
CORS_ORIGINS_KEY = web.AppKey("cors_origins", set)


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


async def services(request: web.Request) -> web.Response:
    db = request.app[METADB_KEY]
    action = request.query.get("Action", "")
    if action != "ObRootServiceInfo":
        return web.json_response(_envelope(None, 400, f"unsupported Action '{action}'"), status=400)
    name = request.query.get("ObCluster")
    cluster_id = request.query.get("ObClusterId")
    records = [r for r in _records(db) if r.get("rs_list")]
    if name is None and request.query.get("version") == "2":
        return web.json_response(_envelope([root_service_info(r) for r in records]))
    if not name:
        return web.json_response(_envelope(None, 400, "ObCluster is required"), status=400)
    matches = [
        r for r in records if r["name"] == name and (cluster_id is None or str(r["ob_cluster_id"]) == cluster_id)
    ]
    if not matches:
        wanted = name + (f" (id {cluster_id})" if cluster_id else "")
        return web.json_response(_envelope(None, 404, f"cluster {wanted} not found"), status=404)
    if request.query.get("version") == "2":
        return web.json_response(_envelope([root_service_info(r) for r in matches]))
    return web.json_response(_envelope(root_service_info(matches[0])))


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _codec_handler(encode: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        codec = request.app[CODEC_KEY]
        try:
            payloads = json_format.Parse(await request.text(), Payloads())
        except json_format.ParseError:
            return web.json_response({"error": 'body must be {"payloads": [...]}'}, status=400)
        converted = await (codec.encode if encode else codec.decode)(list(payloads.payloads))
        reply = json_format.MessageToJson(Payloads(payloads=converted))
        return web.Response(text=reply, content_type="application/json")

    return handle


@web.middleware
async def _cors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    allowed = request.app[CORS_ORIGINS_KEY]
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS" and request.path.startswith("/codec"):
        response: web.StreamResponse = web.Response(status=204)
    else:
        response = await handler(request)
    if origin and (origin in allowed or "*" in allowed) and request.path.startswith("/codec"):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-Namespace, Authorization"
        response.headers["Access-Control-Allow-Credentials"] = "true"
    return response


def service_app(db: Database, codec: EncryptionCodec | None = None, cors_origins: str = "") -> web.Application:
    app = web.Application(middlewares=[_cors])
    app[METADB_KEY] = db
    app[CORS_ORIGINS_KEY] = {origin.strip() for origin in cors_origins.split(",") if origin.strip()}
    app.router.add_get("/services", services)
    app.router.add_get("/healthz", health)
    if codec is not None:
        app[CODEC_KEY] = codec
        app.router.add_post("/codec/encode", _codec_handler(encode=True))
        app.router.add_post("/codec/decode", _codec_handler(encode=False))
        app.router.add_route("OPTIONS", "/codec/{tail:.*}", health)
    return app


async def serve(
    db: Database, host: str, port: int, codec: EncryptionCodec | None = None, *, cors_origins: str | None = None
) -> web.AppRunner:
    """The HTTP service on host:port; `cors_origins` (comma-separated) may call the codec (default: the
    setting's default, the local Temporal UI)."""
    if cors_origins is None:
        cors_origins = str(Settings.model_fields["codec_cors_origins"].default)
    runner = web.AppRunner(service_app(db, codec, cors_origins), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
