"""`python -m obsim`: a simulated OceanBase cluster (and, with --ssh-port, its hosts; with --proxy-port, an
OBProxy in front of it).

Prints one line `READY {json}` once every endpoint accepts connections; stops cleanly on SIGTERM.

Network conditions (this machine has no netem): --latency-ms and --jitter-ms delay every exchange on the
SQL, SSH and proxy endpoints; with them, or with --network, a relay in front of each endpoint also lets the
control API partition an endpoint or a host, cut open connections and slow a host's commands (see
obsim.control). Without them the endpoints are reached directly.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web
from mysql_mimic.stream import ConnectionClosed

from obsim.cluster import ServerSpec, SimCluster
from obsim.control import control_app
from obsim.hosts import start_hosts
from obsim.network import Network, NetworkConditions
from obsim.proxy import start_proxy_endpoint
from obsim.server import start_sql_endpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m obsim", description=__doc__)
    parser.add_argument("--zones", type=int, default=1)
    parser.add_argument("--servers-per-zone", type=int, default=1)
    parser.add_argument(
        "--observers-per-host",
        type=int,
        default=1,
        help="servers of a zone sharing one host address; the k-th one on a host uses ports +10*k",
    )
    parser.add_argument("--root-password", help="root@sys password (or --root-password-file)")
    parser.add_argument("--root-password-file", type=Path)
    parser.add_argument("--base-address", default="127.0.0.2", help="first server's loopback address")
    parser.add_argument("--sql-port", type=int, default=2881)
    parser.add_argument("--rpc-port", type=int, default=2882)
    parser.add_argument("--cluster-name", default="obcluster")
    parser.add_argument("--cluster-id", type=int, default=1)
    parser.add_argument("--version", default="4.2.1.8")
    parser.add_argument("--io-calibration-seconds", type=float, default=1.0)
    parser.add_argument(
        "--standby", action="store_true", help="a standby cluster: its user tenants report TENANT_ROLE 'STANDBY'"
    )
    parser.add_argument("--proxy-port", type=int, help="also run an OBProxy on this port (0 picks a free port)")
    parser.add_argument("--proxy-address", default="127.0.0.1", help="the OBProxy's loopback address")
    parser.add_argument("--control-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ssh-port", type=int, help="also start one SSH server per host on this port")
    parser.add_argument("--hosts-dir", type=Path, help="where the simulated hosts' roots live (with --ssh-port)")
    parser.add_argument("--ssh-password-file", type=Path, help="also accept this password for the SSH user")
    network = parser.add_argument_group("network conditions")
    network.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="one-way delay of every exchange on the SQL, SSH and proxy endpoints: a query costs twice this, "
        "a connect its handshake's round trips",
    )
    network.add_argument("--jitter-ms", type=float, default=0.0, help="each delay varies by up to ± this (uniform)")
    network.add_argument("--jitter-seed", type=int, help="seed of the jitter's random numbers")
    network.add_argument(
        "--network",
        action="store_true",
        help="relay every endpoint even at zero latency, so that the control API can partition endpoints and "
        "cut connections (implied by --latency-ms or --jitter-ms above 0)",
    )
    args = parser.parse_args(argv)
    if args.latency_ms < 0 or args.jitter_ms < 0:
        parser.error("--latency-ms and --jitter-ms must not be negative")
    if not args.root_password and not args.root_password_file:
        parser.error("--root-password or --root-password-file is required")
    args.ssh_password = args.ssh_password_file.read_text().rstrip("\n") if args.ssh_password_file else None
    if args.root_password_file:
        args.root_password = args.root_password_file.read_text().rstrip("\n")
    base = ipaddress.ip_address(args.base_address)
    if not base.is_loopback:
        parser.error("--base-address must be a loopback address (127.0.0.0/8)")
    if not ipaddress.ip_address(args.proxy_address).is_loopback:
        parser.error("--proxy-address must be a loopback address (127.0.0.0/8)")
    last = ipaddress.ip_address(int(base) + args.zones * args.servers_per_zone - 1)
    if not last.is_loopback:
        parser.error("too many servers for the loopback range from --base-address")
    if args.hosts_dir is not None:
        # Observers start in their host's install directory: a relative path would point elsewhere there.
        args.hosts_dir = args.hosts_dir.resolve()
    return args


def server_specs(args: argparse.Namespace) -> list[ServerSpec]:
    base = int(ipaddress.ip_address(args.base_address))
    specs = []
    per_host = max(args.observers_per_host, 1)
    hosts_per_zone = -(-args.servers_per_zone // per_host)
    for zone in range(args.zones):
        for index in range(args.servers_per_zone):
            address = str(ipaddress.ip_address(base + zone * hosts_per_zone + index // per_host))
            offset = 10 * (index % per_host)
            specs.append(ServerSpec(address, args.rpc_port + offset, args.sql_port + offset, f"zone{zone + 1}"))
    return specs


async def run(args: argparse.Namespace) -> None:
    specs = server_specs(args)
    cluster = SimCluster(
        servers=specs,
        root_password=args.root_password,
        cluster_name=args.cluster_name,
        cluster_id=args.cluster_id,
        version=args.version,
        io_calibration_seconds=args.io_calibration_seconds,
        standby=args.standby,
    )
    network = Network(NetworkConditions(args.latency_ms, args.jitter_ms, args.jitter_seed), relay=args.network)
    hosts = None
    relays: dict[str, str] | None = None
    if args.ssh_port:
        base = args.hosts_dir or Path(tempfile.mkdtemp(prefix="obsim-"))
        (base / "sock").mkdir(parents=True, exist_ok=True)
        relays = {s.label: str(base / "sock" / f"{s.ip}-{s.rpc_port}.sock") for s in specs}
    endpoints = [
        await start_sql_endpoint(cluster, spec, relays[spec.label] if relays else None, network) for spec in specs
    ]
    ready: dict[str, Any] = {
        "cluster": {"name": args.cluster_name, "id": args.cluster_id, "version": args.version, "standby": args.standby},
        "servers": [{"zone": s.zone, "address": s.ip, "sql_port": s.sql_port, "rpc_port": s.rpc_port} for s in specs],
        "hosts": [],
        "network": network.state()["conditions"],
    }
    extra_state: dict[str, Any] = {}
    if args.proxy_port is not None:
        proxy = await start_proxy_endpoint(cluster, args.proxy_address, args.proxy_port, network)
        endpoints.append(proxy)
        ready["proxy"] = extra_state["proxy"] = {"address": args.proxy_address, "port": proxy.port}
    if args.ssh_port:
        hosts = await start_hosts(
            specs, args.ssh_port, base, args.sql_port, relays=relays, password=args.ssh_password, network=network
        )
        ready["hosts"] = [{"address": h.address, "ssh_port": args.ssh_port, "root": str(h.root)} for h in hosts.hosts]
        ready["ssh"] = hosts.client_info()

    async def join(spec: ServerSpec, observer: bool) -> dict[str, Any]:
        """A server joining with its host: its SQL endpoint behind its observer (unless `observer` is
        false: a host where the observer is not running), its host's SSH server."""
        assert hosts is not None
        relay = str(base / "sock" / f"{spec.ip}-{spec.rpc_port}.sock") if observer else None
        if relay is not None:
            endpoints.append(await start_sql_endpoint(cluster, spec, relay, network))
        host = await hosts.join(spec, relay)
        return {"address": host.address, "ssh_port": args.ssh_port, "root": str(host.root)}

    runner = web.AppRunner(control_app(cluster, extra_state, network, join if args.ssh_port else None))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.control_port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ready["control"] = f"http://127.0.0.1:{port}"
    print("READY " + json.dumps(ready), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if hosts is not None:
        await hosts.close()
    for endpoint in endpoints:
        await endpoint.close()
    network.close()
    if args.ssh_port and not args.hosts_dir:
        shutil.rmtree(base, ignore_errors=True)
    await runner.cleanup()


class _DroppedBeforeHandshake(logging.Filter):
    """A client that connects and leaves before the MySQL handshake (a port probe) is no error."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        # Through a relay the client's leaving arrives as an orderly EOF, which mysql-mimic raises as its own.
        dropped = ConnectionError | BrokenPipeError | ConnectionClosed
        return not ("client_connected_cb" in record.getMessage() and isinstance(error, dropped))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s obsim %(levelname)s %(message)s")
    logging.getLogger("asyncio").addFilter(_DroppedBeforeHandshake())
    # mysql-mimic logs every error it answers with; those are the simulator's normal answers.
    logging.getLogger("mysql_mimic").setLevel(logging.CRITICAL)
    args = parse_args(argv)
    try:
        asyncio.run(run(args))
    except OSError as exc:
        print(f"obsim: cannot listen: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
