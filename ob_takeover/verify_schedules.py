"""Every managed cluster is verified at an interval: one Temporal Schedule per cluster, kept in step with the
metadb by a reconciler that each worker runs (on start and every `verify_reconcile_seconds`).

A cluster whose takeover finished (RUNNING) gets a schedule `verify-<task queue>-cluster-<id>` that starts
`VerifyManagedCluster` every `verify_interval` on this worker's task queue; a schedule of a cluster no longer
managed (released) is deleted, with its latest report. The schedules are Temporal's, so they outlive any
restart; several workers reconciling at once converge on the same schedules. A schedule paused by an
operator stays paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from contracts.engine import task_memo, verify_schedule_id, verify_schedule_prefix
from metadb import clusters, verifications
from metadb.db import Database
from workflows.verify import VerifyManagedCluster

log = logging.getLogger("ob_takeover.verify_schedules")


@dataclass
class Reconciled:
    """What one reconciliation changed, by cluster id."""

    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)


def verify_schedule(cluster_id: int, task_queue: str, interval: float) -> Schedule:
    """The schedule of one managed cluster: a verification every `interval` seconds, one at a time."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            VerifyManagedCluster.run,
            {"clusterId": cluster_id},
            id=verify_schedule_id(cluster_id, task_queue),
            task_queue=task_queue,
            memo=task_memo("schedule"),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=interval))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def _managed_ids(db: Database) -> set[int]:
    return {int(row["id"]) for row in clusters.list_clusters(db) if row["status"] == clusters.RUNNING}


async def reconcile_schedules(client: Client, db: Database, *, task_queue: str, interval: float) -> Reconciled:
    """Create the missing schedules, give the existing ones the configured interval, delete the ones of
    clusters no longer managed (only schedules that start workflows on `task_queue`: another deployment's
    on the same namespace are left alone)."""
    done = Reconciled()
    managed = await asyncio.to_thread(_managed_ids, db)
    for cluster_id in sorted(managed):
        handle = client.get_schedule_handle(verify_schedule_id(cluster_id, task_queue))
        queue, every = await _described(handle)
        if queue is None:
            try:
                await client.create_schedule(handle.id, verify_schedule(cluster_id, task_queue, interval))
                done.created.append(cluster_id)
                log.info("schedule %s created: cluster %d verified every %.0fs", handle.id, cluster_id, interval)
            except ScheduleAlreadyRunningError:
                pass  # another worker created it first
        elif queue == task_queue and every != timedelta(seconds=interval):
            await handle.update(lambda update: _with_interval(update, interval))
            done.updated.append(cluster_id)
    listed = [entry.id async for entry in await client.list_schedules()]
    for schedule_id in listed:
        prefix = verify_schedule_prefix(task_queue)
        suffix = schedule_id.removeprefix(prefix)
        if not schedule_id.startswith(prefix) or not suffix.isdigit() or int(suffix) in managed:
            continue
        handle = client.get_schedule_handle(schedule_id)
        queue, _ = await _described(handle)
        if queue != task_queue:
            continue
        try:
            await handle.delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            continue
        await asyncio.to_thread(verifications.forget, db, int(suffix))
        done.deleted.append(int(suffix))
        log.info("schedule %s deleted: cluster %s is no longer managed", schedule_id, suffix)
    return done


async def _described(handle: ScheduleHandle) -> tuple[str | None, timedelta | None]:
    """The task queue a schedule starts its workflow on and its interval; (None, None) when there is none."""
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None, None
        raise
    action = description.schedule.action
    intervals = description.schedule.spec.intervals
    queue = action.task_queue if isinstance(action, ScheduleActionStartWorkflow) else ""
    return queue, intervals[0].every if intervals else None


def _with_interval(update: ScheduleUpdateInput, interval: float) -> ScheduleUpdate:
    schedule = update.description.schedule
    schedule.spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=interval))])
    return ScheduleUpdate(schedule=schedule)


async def keep_schedules(
    client: Client, db: Database, *, task_queue: str, interval: float, every: float, stop: asyncio.Event
) -> None:
    """Reconcile now and every `every` seconds until `stop` is set; a failed round is logged and retried."""
    while not stop.is_set():
        try:
            await reconcile_schedules(client, db, task_queue=task_queue, interval=interval)
        except Exception as exc:  # Temporal or the metadb away for a while: the next round tries again
            log.warning("verification schedules not reconciled: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def set_paused(client: Client, cluster_id: int, task_queue: str, paused: bool, note: str) -> None:
    """Pause or resume the verification schedule of `cluster_id` (an RPCError NOT_FOUND when it has none)."""
    handle = client.get_schedule_handle(verify_schedule_id(cluster_id, task_queue))
    if paused:
        await handle.pause(note=note)
    else:
        await handle.unpause(note=note)
