"""`ob-takeover serve`: the HTTP service (OCP's REST API, the config server) and the payload codec."""

from __future__ import annotations

import argparse
import asyncio

from ob_takeover.cli.arguments import Subcommands, add_command
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
    from ob_takeover.service import create_app, create_codec_app, serve
    from ob_takeover.telemetry import configure_logging, setup_tracing

    settings = args.settings
    configure_logging(settings)
    interceptors = setup_tracing(settings, "ob-takeover-service")
    host, _, port = args.listen.rpartition(":")
    db = open_metadb(args)
    services = Services(
        settings=settings,
        db=db,
        vault=open_vault(db, args),
        auth=Authenticator(db),
        connect=lambda: connect(settings, interceptors=interceptors),
    )
    codec = EncryptionCodec(load_codec_keys(settings))

    codec_host, _, codec_port = args.codec_listen.rpartition(":")

    async def run() -> None:
        api = await serve(
            create_app(db, services=services), host or "127.0.0.1", int(port), trusted_proxies=args.trusted_proxies
        )
        codec_app = create_codec_app(codec, cors_origins=settings.codec_cors_origins, token=settings.codec_token)
        codec_server = await serve(codec_app, codec_host or "127.0.0.1", int(codec_port))
        print(f"ob-takeover service listening on http://{host or '127.0.0.1'}:{port}", flush=True)
        print(f"payload codec listening on http://{codec_host or '127.0.0.1'}:{codec_port}/codec", flush=True)
        await asyncio.gather(api.task, codec_server.task)

    asyncio.run(run())
