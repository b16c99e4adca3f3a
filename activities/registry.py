"""The activities a production worker registers: only real implementations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.settings import load_engine_settings
from activities.topology import discover_topology

ACTIVITIES: list[Callable[..., Any]] = [load_engine_settings, discover_topology]
