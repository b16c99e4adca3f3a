"""The one way every process reaches Temporal.

Address, namespace, TLS and API key come from Temporal's own client configuration (a profile in
`temporal.toml`, `TEMPORAL_*` variables), so a Temporal Cloud or mTLS setup made for the `temporal`
CLI works here unchanged; an address or namespace in ob-takeover's settings wins. Payloads go through
the project's encrypting data converter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio.client import Client, Interceptor
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from contracts.settings import Settings
from ob_takeover.codec import data_converter

DEFAULT_ADDRESS = "localhost:7233"


def connect_options(settings: Settings) -> dict[str, Any]:
    """`Client.connect` arguments: the Temporal profile's, with ob-takeover's settings on top."""
    options: dict[str, Any] = dict(ClientConfig.load_client_connect_config(profile=settings.temporal_profile))
    options.setdefault("target_host", DEFAULT_ADDRESS)
    if settings.temporal_address:
        options["target_host"] = settings.temporal_address
    if settings.temporal_namespace:
        options["namespace"] = settings.temporal_namespace
    return options


async def connect(
    settings: Settings, *, runtime: Runtime | None = None, interceptors: Sequence[Interceptor] = ()
) -> Client:
    """A client for the configured Temporal server, with the project's encrypting data converter; with
    `runtime`, the SDK's metrics go where that runtime exports them; `interceptors` (tracing) apply to the
    client and to workers built on it."""
    options = connect_options(settings)
    if runtime is not None:
        options["runtime"] = runtime
    return await Client.connect(
        options.pop("target_host"), data_converter=data_converter(settings), interceptors=interceptors, **options
    )


def ui_link(settings: Settings, workflow_id: str, run_id: str | None = None) -> str:
    """The workflow's page in the Temporal UI (its run's history when `run_id` is given)."""
    namespace = settings.temporal_namespace or "default"
    url = f"{settings.temporal_ui.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}"
    return url + (f"/{run_id}/history" if run_id else "")
