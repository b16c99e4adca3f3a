"""Worker settings that the workflow reads once, through a local activity, so replays see the same values."""

from __future__ import annotations

import os
import socket

from temporalio import activity

from contracts.messages import EngineSettings

TIMEOUT_SCALE_ENV = "OB_TAKEOVER_TIMEOUT_SCALE"
RETRY_INTERVAL_ENV = "OB_TAKEOVER_RETRY_INTERVAL"


def read_engine_settings(environ: dict[str, str] | None = None) -> EngineSettings:
    """Engine settings from the environment; a malformed value is an error naming the variable."""
    env = os.environ if environ is None else environ
    values: dict[str, float] = {}
    for name, field in (
        (TIMEOUT_SCALE_ENV, "timeout_scale"),
        (RETRY_INTERVAL_ENV, "retry_initial_interval"),
    ):
        raw = env.get(name)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name} must be a positive number, got {raw!r}") from None
        if value <= 0:
            raise ValueError(f"{name} must be a positive number, got {raw!r}")
        values[field] = value
    return EngineSettings(executor=socket.gethostname(), **values)


@activity.defn(name="load_engine_settings")
async def load_engine_settings() -> EngineSettings:
    return read_engine_settings()
