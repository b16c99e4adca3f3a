"""The simulator's control HTTP API (loopback only): state, faults, server and zone changes."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from obsim.cluster import Fault, ServerSpec, SimCluster
from obsim.network import Network


class _BadField(Exception):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


# Starts what comes with a server that joins (`POST /servers` with "host": true): (server, observer running).
Joiner = Callable[[ServerSpec, bool], Awaitable[dict[str, Any]]]


def control_app(
    cluster: SimCluster,
    extra_state: dict[str, Any] | None = None,
    network: Network | None = None,
    join: Joiner | None = None,
) -> web.Application:
    """`GET /state`: the cluster's state (`SimCluster.state`: among it `logins`, every login with its endpoint,
    "proxy" for the simulated OBProxy, and `statement_log`) and `extra_state` (`proxy` {address, port} when one
    runs); `GET /faults`; `POST /faults` {match, server, error, message, times, delay, skip};
    `DELETE /faults`; `PATCH /servers/{ip:port}` {status, stop_time, start_service_time}; `POST /servers` {ip,
    rpc_port, sql_port, zone} and `DELETE /servers/{ip:port}`: a server added or deleted by hand (its row in
    DBA_OB_SERVERS; no observer or host comes with it); with `"host": true` (and --ssh-port) the server joins
    as a real one does: its observer process on its host (an SSH server, its key added to the known_hosts
    file, unless a host has its address already), answered with `host` {address, ssh_port, root};
    `"observer": false` leaves the observer not running there; `PATCH /zones/{zone}`
    {status, region, idc}; `PUT /parameters/{name}` {value}.

    The network (`obsim.network`): `GET /network` {conditions {latency_ms, jitter_ms, relayed}, partitions
    {endpoint: seconds left}, slow_commands {host: seconds}, connections_opened and connections_open {sql, ssh,
    proxy}, endpoints {ADDRESS:PORT: {kind, host, opened, open}}}; `POST /network/partitions` {endpoint,
    seconds}: new connections to the endpoint time out and open ones stall for that long; `DELETE
    /network/partitions` heals them all; `POST /network/cuts` {endpoint}: its open connections are reset;
    `PUT /network/slow-commands` {host, seconds}: every command on that host starts that much later (0: no
    longer). An endpoint is "ADDRESS:PORT", "host:ADDRESS" (all of a host's endpoints) or "proxy"; partitions
    and cuts need the relay (`--network`, `--latency-ms` or `--jitter-ms`) and answer 409 without it. A bad
    body answers 400 naming the field."""
    app = web.Application()
    network = network or Network()

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

    async def add_server(request: web.Request) -> web.Response:
        body = await body_of(request)
        ip, zone = text_field(body, "ip"), text_field(body, "zone")
        spec = ServerSpec(ip, port_field(body, "rpc_port"), port_field(body, "sql_port"), zone)
        with_host, observer = flag_field(body, "host", False), flag_field(body, "observer", True)
        if with_host and join is None:
            refusal = "a server with its host needs obsim started with --ssh-port"
            return web.json_response({"error": refusal}, status=409)
        if with_host and not _loopback(ip):
            raise _BadField("ip", "a server with its host needs a loopback address (127.0.0.0/8)")
        if not cluster.add_server(spec.ip, spec.rpc_port, spec.sql_port, spec.zone):
            return web.json_response({"error": "the server is listed already, or no such zone"}, status=409)
        if not with_host or join is None:
            return web.json_response({"ok": True}, status=201)
        try:
            host = await join(spec, observer)
        except OSError as exc:
            cluster.remove_server(spec.label)
            return web.json_response({"error": f"the server's host did not start: {exc}"}, status=500)
        return web.json_response({"ok": True, "host": host}, status=201)

    async def delete_server(request: web.Request) -> web.Response:
        if not cluster.remove_server(request.match_info["label"]):
            return web.json_response({"error": "no such server"}, status=404)
        return web.json_response({"ok": True})

    async def patch_zone(request: web.Request) -> web.Response:
        if not cluster.update_zone(request.match_info["zone"], await request.json()):
            return web.json_response({"error": "no such zone or nothing to change"}, status=404)
        return web.json_response({"ok": True})

    async def put_parameter(request: web.Request) -> web.Response:
        body = await request.json()
        cluster.set_parameter(request.match_info["name"], str(body["value"]))
        return web.json_response({"ok": True})

    async def body_of(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            raise _BadField("body", f"not JSON ({exc})") from None
        if not isinstance(body, dict):
            raise _BadField("body", "not a JSON object")
        return body

    def text_field(body: dict[str, Any], name: str) -> str:
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise _BadField(name, "required, a non-empty string")
        return value

    def port_field(body: dict[str, Any], name: str) -> int:
        value = body.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise _BadField(name, "required, a port number")
        return value

    def flag_field(body: dict[str, Any], name: str, default: bool) -> bool:
        value = body.get(name, default)
        if not isinstance(value, bool):
            raise _BadField(name, "must be true or false")
        return value

    def seconds_field(body: dict[str, Any], positive: bool) -> float:
        value = body.get("seconds")
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise _BadField("seconds", "required, a number of seconds")
        if value < 0 or (positive and value == 0):
            raise _BadField("seconds", f"must be {'above' if positive else 'at least'} 0")
        return float(value)

    def endpoint_field(body: dict[str, Any]) -> str:
        spec = text_field(body, "endpoint")
        try:
            network.select(spec)
        except ValueError as exc:
            raise _BadField("endpoint", str(exc)) from None
        return spec

    def needs_relay() -> web.Response | None:
        if network.relayed:
            return None
        message = "partitions and cuts need the network relay: start obsim with --network (or --latency-ms)"
        return web.json_response({"error": message}, status=409)

    @web.middleware
    async def bad_fields(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except _BadField as exc:
            return web.json_response({"error": str(exc), "field": exc.name}, status=400)
        return response

    async def network_state(request: web.Request) -> web.Response:
        return web.json_response(network.state())

    async def partition(request: web.Request) -> web.Response:
        if refused := needs_relay():
            return refused
        body = await body_of(request)
        spec, seconds = endpoint_field(body), seconds_field(body, positive=True)
        endpoints = network.partition(spec, seconds)
        return web.json_response({"partitioned": [e.name for e in endpoints], "seconds": seconds}, status=201)

    async def heal(request: web.Request) -> web.Response:
        return web.json_response({"healed": network.heal()})

    async def cut(request: web.Request) -> web.Response:
        if refused := needs_relay():
            return refused
        return web.json_response({"cut": network.cut(endpoint_field(await body_of(request)))})

    async def slow_commands(request: web.Request) -> web.Response:
        body = await body_of(request)
        host, seconds = text_field(body, "host"), seconds_field(body, positive=False)
        try:
            network.slow_commands(host, seconds)
        except ValueError as exc:
            raise _BadField("host", str(exc)) from None
        return web.json_response({"slow_commands": network.state()["slow_commands"]})

    app.middlewares.append(bad_fields)
    app.router.add_get("/network", network_state)
    app.router.add_post("/network/partitions", partition)
    app.router.add_delete("/network/partitions", heal)
    app.router.add_post("/network/cuts", cut)
    app.router.add_put("/network/slow-commands", slow_commands)
    app.router.add_get("/state", state)
    app.router.add_get("/faults", list_faults)
    app.router.add_post("/faults", add_fault)
    app.router.add_delete("/faults", clear_faults)
    app.router.add_patch("/servers/{label}", patch_server)
    app.router.add_post("/servers", add_server)
    app.router.add_delete("/servers/{label}", delete_server)
    app.router.add_patch("/zones/{zone}", patch_zone)
    app.router.add_put("/parameters/{name}", put_parameter)
    return app
