"""`ob-takeover serve`: the HTTP service (OCP's REST API, the config server) and the payload codec."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from contracts.endpoints import is_loopback_host
from ob_takeover.cli.arguments import Subcommands, add_command
from ob_takeover.cli.console import CommandError
from ob_takeover.cli.deps import open_metadb, open_vault


def add_serve_parser(commands: Subcommands) -> None:
    """`serve`."""
    serve = add_command(
        commands, "serve", cmd_serve, "run the HTTP service: OCP's REST API, config server, payload codec"
    )
    serve.add_argument("--listen", default="127.0.0.1:8080", help="REST API and config server")
    serve.add_argument(
        "--codec-listen", default="127.0.0.1:8081", help="the payload codec (for the Temporal UI and CLI only)"
    )
    serve.add_argument(
        "--tls-cert", metavar="FILE", help="the REST API (and the codec) over HTTPS with this certificate"
    )
    serve.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert")
    serve.add_argument(
        "--config-listen",
        metavar="ADDR",
        help="the config server on a plain-HTTP listener of its own (observers fetch it over HTTP); with TLS on "
        "the API, it is served only there",
    )
    serve.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow plain HTTP on an address that is not loopback: Basic credentials and passwords cross the "
        "network in clear",
    )
    serve.add_argument(
        "--trusted-proxies",
        default="",
        metavar="ADDRESSES",
        help="reverse proxies whose X-Forwarded-For names the client (comma-separated addresses or networks); "
        "by default the connection's own address is the client's, whatever the headers say",
    )


def cmd_serve(args: argparse.Namespace) -> None:
    # Imported here: the web stack is loaded only by the command that serves.
    from ob_takeover.api.auth import Authenticator
    from ob_takeover.api.routes import Services
    from ob_takeover.codec import EncryptionCodec, load_codec_keys
    from ob_takeover.connection import connect
    from ob_takeover.service import create_app, create_codec_app, create_config_app, serve
    from ob_takeover.telemetry import configure_logging, setup_tracing

    settings = args.settings
    tls = _tls_files(args)
    listeners = _listeners(args, tls)
    configure_logging(settings)
    interceptors = setup_tracing(settings, "ob-takeover-service")
    db = open_metadb(args)
    services = Services(
        settings=settings,
        db=db,
        vault=open_vault(db, args),
        auth=Authenticator(db),
        connect=lambda: connect(settings, interceptors=interceptors),
    )
    codec = EncryptionCodec(load_codec_keys(settings))
    scheme = "https" if tls else "http"

    async def run() -> None:
        (host, port), (codec_host, codec_port) = listeners["api"], listeners["codec"]
        app = create_app(db, services=services, config_server=args.config_listen is None)
        running = [await serve(app, host, port, trusted_proxies=args.trusted_proxies, tls=tls)]
        print(f"ob-takeover service listening on {scheme}://{host}:{port}", flush=True)
        codec_app = create_codec_app(codec, cors_origins=settings.codec_cors_origins, token=settings.codec_token)
        running.append(await serve(codec_app, codec_host, codec_port, tls=tls))
        print(f"payload codec listening on {scheme}://{codec_host}:{codec_port}/codec", flush=True)
        if "config" in listeners:
            config_host, config_port = listeners["config"]
            running.append(await serve(create_config_app(db), config_host, config_port))
            print(f"config server listening on http://{config_host}:{config_port}/services", flush=True)
        await asyncio.gather(*(server.task for server in running))

    asyncio.run(run())


def _tls_files(args: argparse.Namespace) -> tuple[str, str] | None:
    """The certificate and key files, both or neither, readable."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise CommandError("give --tls-cert and --tls-key together")
    if not args.tls_cert:
        return None
    for option, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if not Path(path).is_file():
            raise CommandError(f"{option} {path}: no such file")
    return str(args.tls_cert), str(args.tls_key)


def _listeners(args: argparse.Namespace, tls: tuple[str, str] | None) -> dict[str, tuple[str, int]]:
    """Where each part listens; plain HTTP on an address that is not loopback only with --insecure-http (the
    config server excepted: it answers anonymous observers, with no secret)."""
    listeners = {"api": _address(args.listen, "--listen"), "codec": _address(args.codec_listen, "--codec-listen")}
    if args.config_listen:
        listeners["config"] = _address(args.config_listen, "--config-listen")
    for name, option in (("api", "--listen"), ("codec", "--codec-listen")):
        host = listeners[name][0]
        if tls is None and not args.insecure_http and not is_loopback_host(host):
            raise CommandError(
                f"{option} {host} is not a loopback address and the service has no TLS: Basic credentials and "
                "passwords would cross the network in clear; give --tls-cert and --tls-key (or --insecure-http "
                "behind a TLS-terminating proxy)"
            )
    return listeners


def _address(text: str, option: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"{option} {text}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)
