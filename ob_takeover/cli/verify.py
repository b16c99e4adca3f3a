"""`verify`: is a managed cluster still as its takeover left it? A drift report as a table and a JSON line;
`--repair` puts right what the report names, as a task; `verify pause|resume CLUSTER` its schedule.

Exit codes: 0 no drift (after the repair, with `--repair --wait`), 1 drift found, as the other commands
otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from temporalio.client import WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.endpoints import endpoint_key, parse_endpoint
from contracts.engine import verify_schedule_id
from contracts.task_view import TaskView
from contracts.verification import VerificationReport, VerificationResult
from metadb import clusters
from ob_takeover.cli.arguments import Subcommands, add_command
from ob_takeover.cli.console import EXIT_FAILED, EXIT_OK, CommandError, aligned, emit
from ob_takeover.cli.deps import connect_client, open_metadb
from ob_takeover.cli.tasks import task_table
from ob_takeover.verify_schedules import set_paused
from workflows.verify import VerifyManagedCluster

ACTIONS = ("pause", "resume")


def add_verify_parsers(commands: Subcommands) -> None:
    """`verify CLUSTER [--repair] [--wait]`, `verify --all`, `verify pause|resume CLUSTER`."""
    command = add_command(
        commands, "verify", cmd_verify, "verify managed clusters against what their takeover left; repair drift"
    )
    command.add_argument(
        "target",
        nargs="*",
        metavar="[pause|resume] CLUSTER",
        help="the cluster: its id (as `cluster list` shows it), name or ADDRESS:PORT; pause or resume its schedule",
    )
    command.add_argument("--all", action="store_true", help="every managed cluster")
    command.add_argument("--repair", action="store_true", help="run the subtasks that put the drift right, as a task")
    command.add_argument("--wait", action="store_true", help="with --repair: follow the repair task to its end")


def cmd_verify(args: argparse.Namespace) -> int:
    target: list[str] = list(args.target)
    action = target.pop(0) if target and target[0] in ACTIONS else None
    if args.all == bool(target) or len(target) > 1:
        raise CommandError("name one CLUSTER, or --all")
    if (action or args.all) and (args.repair or args.wait):
        raise CommandError("--repair and --wait go with one CLUSTER")
    db = open_metadb(args)
    if args.all:
        ids = [int(r["id"]) for r in clusters.list_clusters(db) if r["status"] == clusters.RUNNING]
    else:
        ids = [_cluster_id(db, target[0])]
    if action:
        return asyncio.run(_pause(args, ids[0], action == "pause"))
    return asyncio.run(_verify(args, ids))


def _cluster_id(db: Any, text: str) -> int:
    rows = clusters.list_clusters(db)
    if text.isdigit():
        found = [r for r in rows if int(r["id"]) == int(text)]
    elif ":" in text:
        try:
            endpoint = parse_endpoint(text)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        found = [r for r in rows if endpoint_key(r["address"], int(r["port"])) == endpoint]
    else:
        found = [r for r in rows if r["name"] == text]
    if not found:
        raise CommandError(f"no managed cluster {text}; `ob-takeover cluster list` lists them")
    if len(found) > 1:
        raise CommandError(f"{len(found)} managed clusters are named {text}: give the id")
    return int(found[0]["id"])


async def _pause(args: argparse.Namespace, cluster_id: int, paused: bool) -> int:
    client = await connect_client(args)
    queue = args.settings.task_queue
    schedule = verify_schedule_id(cluster_id, queue)
    try:
        await set_paused(client.client, cluster_id, queue, paused, f"{'paused' if paused else 'resumed'} from the CLI")
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise CommandError(
            f"no schedule {schedule}: the worker creates it within verify_reconcile_seconds of the takeover"
        ) from None
    print(f"schedule {schedule} {'paused' if paused else 'resumed'}", file=sys.stderr)
    emit({"scheduleId": schedule, "paused": paused})
    return EXIT_OK


async def _verify(args: argparse.Namespace, ids: list[int]) -> int:
    client = await connect_client(args)
    reports: list[VerificationReport] = []
    repair_task: TaskView | None = None
    if args.repair and not args.wait:
        handle = await client.verify(ids[0], repair=True)
        report, repair_task = await _report_and_task(handle)
        reports.append(report)
    else:
        handles = [await client.verify(cluster_id, repair=args.repair) for cluster_id in ids]
        results: list[VerificationResult] = list(await asyncio.gather(*(h.result() for h in handles)))
        for result in results:
            if result.repair_task is not None:
                print(f"before the repair: {len(result.report.findings)} drift(s)", file=sys.stderr)
                repair_task = result.repair_task
            reports.append(result.final)
    print(report_table(reports))
    if repair_task is not None:
        print(task_table(repair_task))
    out: dict[str, Any] = {"reports": [r.model_dump(mode="json") for r in reports]}
    if repair_task is not None:
        out["repairTaskId"] = repair_task.id
        out["repairStatus"] = repair_task.status.value
    drift = sum(len(r.findings) for r in reports)
    out["drift"] = drift
    emit(out)
    return EXIT_FAILED if drift else EXIT_OK


async def _report_and_task(
    handle: WorkflowHandle[Any, VerificationResult],
) -> tuple[VerificationReport, TaskView | None]:
    """A repair's first report and its task as soon as it exists (or the result, when nothing was repairable)."""
    while True:
        description = await handle.describe()
        if description.status is not None and description.status.name != "RUNNING":
            result = await handle.result()
            return result.report, result.repair_task
        try:
            report = await handle.query(VerifyManagedCluster.report)
            task = await handle.query(VerifyManagedCluster.task)
            return report, task
        except WorkflowQueryFailedError:
            await asyncio.sleep(0.2)


def report_table(reports: list[VerificationReport]) -> str:
    """The findings of each report as one table; a clean cluster is one line."""
    rows: list[dict[str, Any]] = []
    for report in reports:
        if report.clean:
            rows.append({"cluster": f"{report.cluster_id} {report.cluster_name}", "kind": "no drift"})
        rows += [
            {
                "cluster": f"{report.cluster_id} {report.cluster_name}",
                "kind": f.kind.value,
                "node": f.node,
                "expected": f.expected,
                "found": f.found,
                "repair": f.repair,
            }
            for f in report.findings
        ]
    return "\n".join(aligned(rows, ["cluster", "kind", "node", "expected", "found", "repair"]))
