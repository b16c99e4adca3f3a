"""The engine settings the workflow reads once, through a local activity, so replays see the same values."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from activities.failures import project_activity
from contracts.messages import EngineSettings
from contracts.settings import Settings
from contracts.stages import LOAD_ENGINE_SETTINGS


def engine_settings(settings: Settings) -> EngineSettings:
    """What of the worker's settings the workflow needs: its host as the executor, timeouts and backoff."""
    return EngineSettings(
        executor=socket.gethostname(),
        timeout_scale=settings.timeout_scale,
        retry_initial_interval=settings.retry_interval,
        fleet_history_events=settings.fleet_history_events,
    )


def engine_settings_activity(settings: Settings) -> Callable[..., Any]:
    """The `load_engine_settings` local activity of a worker with `settings`."""

    @project_activity(LOAD_ENGINE_SETTINGS)
    async def load_engine_settings() -> EngineSettings:
        return engine_settings(settings)

    return load_engine_settings
