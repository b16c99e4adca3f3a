"""The HTTP service (`ob-takeover serve`): the config server that taken-over clusters point at.

`GET /services?Action=ObRootServiceInfo&ObCluster=<name>[&ObClusterId=<id>]` answers with the
cluster's root service list in ob-configserver's shape, from the metadb, so it reflects "Record root
service list"; `&version=2` without a cluster name lists every cluster.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from metadb import clusters
from metadb.db import Database

METADB_KEY = web.AppKey("metadb", Database)


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


def service_app(db: Database) -> web.Application:
    app = web.Application()
    app[METADB_KEY] = db
    app.router.add_get("/services", services)
    app.router.add_get("/healthz", health)
    return app


async def serve(db: Database, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(service_app(db), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
