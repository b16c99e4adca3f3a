"""The activities a production worker registers: every subtask, compensation and helper, real."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from activities.failures import project_activity
from activities.fleet_work import (
    check_fleet_members_activity,
    find_managed_activity,
    prepare_fleet_member_activities,
)
from activities.precheck import run_checks
from activities.preview import preview_takeover
from activities.release_work import describe_managed_cluster_activity
from activities.runtime import Runtime, heartbeat_until_done, subtask_activity
from activities.settings import engine_settings_activity
from activities.subtasks import IMPLEMENTATIONS
from activities.topology import discover_topology_activity
from activities.verify_work import describe_verify_target_activity, verify_managed_cluster_activity
from contracts.messages import PRECHECK_HEARTBEAT_SECONDS, PrecheckInput, PrecheckReport
from contracts.stages import ALLOCATE_TASK_ID, RUN_PRECHECK, activity_names
from metadb import ids


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    """Every activity a takeover schedules, bound to the worker's runtime."""
    missing = set(activity_names()) - set(IMPLEMENTATIONS)
    if missing:
        raise RuntimeError(f"subtask activities without an implementation: {sorted(missing)}")

    @project_activity(RUN_PRECHECK)
    async def run_precheck(arg: PrecheckInput) -> PrecheckReport:
        # Heartbeats let a precheck lost with its worker run again within seconds.
        checks = asyncio.ensure_future(run_checks(runtime, arg, preview=preview_takeover))
        await heartbeat_until_done(checks, PRECHECK_HEARTBEAT_SECONDS / 3, on_cancel=checks.cancel)
        return checks.result()

    @project_activity(ALLOCATE_TASK_ID)
    async def allocate_task_id() -> int:
        return await asyncio.to_thread(ids.allocate_task_id, runtime.db)

    return [
        engine_settings_activity(runtime.settings),
        allocate_task_id,
        discover_topology_activity(runtime),
        describe_managed_cluster_activity(runtime),
        describe_verify_target_activity(runtime),
        verify_managed_cluster_activity(runtime),
        check_fleet_members_activity(),
        find_managed_activity(runtime.db),
        *prepare_fleet_member_activities(runtime.db, runtime.vault),
        run_precheck,
        *(subtask_activity(name, IMPLEMENTATIONS[name], runtime) for name in activity_names()),
    ]
