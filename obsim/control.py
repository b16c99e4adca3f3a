"""The simulator's control HTTP API (loopback only): state, faults, server and zone changes."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from obsim.cluster import Fault, SimCluster


def control_app(cluster: SimCluster, extra_state: dict[str, Any] | None = None) -> web.Application:
    """`GET /state`: the cluster's state (`SimCluster.state`: among it `logins`, every login with its endpoint,
    "proxy" for the simulated OBProxy, and `statement_log`) and `extra_state` (`proxy` {address, port} when one
    runs); `GET /faults`; `POST /faults` {match, server, error, message, times, delay, skip};
    `DELETE /faults`; `PATCH /servers/{ip:port}` {status, stop_time, start_service_time}; `PATCH /zones/{zone}`
    {status, region, idc}; `PUT /parameters/{name}` {value}."""
    app = web.Application()

    async def state(request: web.Request) -> web.Response:
        return web.json_response({**cluster.state(), **(extra_state or {})})

    async def add_fault(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            fault = Fault(
                match=str(body["match"]),
                error=int(body.get("error", 0)),
                message=str(body.get("message", "injected fault")),
                server=body.get("server"),
                times=int(body.get("times", 1)),
                delay=float(body.get("delay", 0)),
                skip=int(body.get("skip", 0)),
            )
            cluster.add_fault(fault)
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": f"bad fault: {exc}"}, status=400)
        return web.json_response({"faults": len(cluster.faults)}, status=201)

    async def list_faults(request: web.Request) -> web.Response:
        return web.json_response({"faults": [dataclasses.asdict(fault) for fault in cluster.faults]})

    async def clear_faults(request: web.Request) -> web.Response:
        cluster.clear_faults()
        return web.json_response({"faults": 0})

    async def patch_server(request: web.Request) -> web.Response:
        if not cluster.update_server(request.match_info["label"], await request.json()):
            return web.json_response({"error": "no such server or nothing to change"}, status=404)
        return web.json_response({"ok": True})

    async def patch_zone(request: web.Request) -> web.Response:
        if not cluster.update_zone(request.match_info["zone"], await request.json()):
            return web.json_response({"error": "no such zone or nothing to change"}, status=404)
        return web.json_response({"ok": True})

    async def put_parameter(request: web.Request) -> web.Response:
        body = await request.json()
        cluster.set_parameter(request.match_info["name"], str(body["value"]))
        return web.json_response({"ok": True})

    app.router.add_get("/state", state)
    app.router.add_get("/faults", list_faults)
    app.router.add_post("/faults", add_fault)
    app.router.add_delete("/faults", clear_faults)
    app.router.add_patch("/servers/{label}", patch_server)
    app.router.add_patch("/zones/{zone}", patch_zone)
    app.router.add_put("/parameters/{name}", put_parameter)
    return app
