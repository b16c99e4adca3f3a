"""`ob-takeover fleet`: many clusters taken over at once, by one fleet workflow."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.client import WorkflowQueryFailedError

from contracts.fleet import MemberStatus
from ob_takeover.cli.arguments import Subcommands, add_command, add_group
from ob_takeover.cli.console import EXIT_FAILED, EXIT_OK, EXIT_RUNNING, CommandError, emit
from ob_takeover.cli.deps import connect_client
from ob_takeover.connection import ui_link

if TYPE_CHECKING:
    from contracts.fleet import FleetView
    from ob_takeover.client import Fleet


def add_fleet_parsers(commands: Subcommands) -> None:
    """`fleet start | status`."""
    fleet = add_group(commands, "fleet", "take many clusters over at once")
    command = add_command(
        fleet, "start", cmd_fleet_start, "start a fleet takeover from a YAML or JSON file of clusters"
    )
    command.add_argument("--file", required=True, help="requests: [takeover bodies], defaults: {…}, maxConcurrent")
    command.add_argument("--name", help="the fleet's name; its workflow id is fleet-NAME (default: the file's stem)")
    command.add_argument("--max-concurrent", type=int, help="takeovers running at once (default: the file's, else 10)")
    command.add_argument("--wait", action="store_true", help="show progress until no member works any more")
    command = add_command(
        fleet, "status", cmd_fleet_status, "the fleet table: every cluster's status and failed subtask"
    )
    command.add_argument("fleet", help="the fleet's name or workflow id")


def fleet_body(args: argparse.Namespace) -> dict[str, Any]:
    """The fleet body from --file (YAML or JSON): `requests` (takeover bodies), optional `maxConcurrent`, and
    optional `defaults` merged into every request (a shared hostInfo or credential id)."""
    path = Path(args.file)
    try:
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except OSError as exc:
        raise CommandError(f"cannot read the fleet from {args.file}: {exc.strerror}") from None
    except Exception as exc:  # JSON or YAML syntax; the parser's message could quote a line with a password
        raise CommandError(f"cannot read the fleet from {args.file}: {_syntax_error_at(exc)}") from None
    if not isinstance(data, dict):
        raise CommandError(f"{args.file}: expected a mapping with 'requests' (optional: 'defaults', 'maxConcurrent')")
    defaults = data.pop("defaults", None) or {}
    if not isinstance(defaults, dict):
        raise CommandError(f"{args.file}: 'defaults' must be a mapping of takeover request fields")
    requests = data.get("requests")
    if isinstance(requests, list):
        data["requests"] = [{**defaults, **r} if isinstance(r, dict) else r for r in requests]
    if args.max_concurrent is not None:
        data["maxConcurrent"] = args.max_concurrent
    return data


def _syntax_error_at(error: Exception) -> str:
    """Where a JSON or YAML file is malformed, without quoting it (a line may hold a password)."""
    mark = getattr(error, "problem_mark", None)
    if mark is not None:
        return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(error, json.JSONDecodeError):
        return f"JSON syntax error at line {error.lineno}, column {error.colno}: {error.msg}"
    return f"{type(error).__name__}"


def fleet_table(view: FleetView) -> str:
    """One row per member: where it stands, its task and, when FAILED, which subtask and why."""
    rows = [
        f"{'#':>4}  {'CLUSTER':<28} {'STATUS':<16} {'TASK':>10}  {'WORKFLOW':<34} FAILED SUBTASK / MESSAGE",
    ]
    for m in view.members:
        rows.append(
            f"{m.index:>4}  {(m.cluster_name or m.endpoint):<28} {m.status.value:<16} {m.task_id or '-':>10}  "
            f"{m.workflow_id:<34} {m.failed_subtask or m.message or ''}".rstrip()
        )
    rows.append(f"{len(view.members)} clusters: {view.counts_line}")
    return "\n".join(rows)


def fleet_exit(view: FleetView) -> int:
    """0 when every member ended SUCCESSFUL or ROLLED_BACK, 3 while one works, else 1."""
    if all(m.status in (MemberStatus.SUCCESSFUL, MemberStatus.ROLLED_BACK) for m in view.members):
        return EXIT_OK
    return EXIT_RUNNING if view.working else EXIT_FAILED


async def _watch_fleet(fleet: Fleet) -> FleetView:
    """Print the fleet's counts whenever they change, until no member works any more."""
    last = ""
    while True:
        try:
            view = await fleet.view()
        except WorkflowQueryFailedError:
            await asyncio.sleep(0.5)
            continue
        line = view.counts_line
        if line != last:
            print(line, file=sys.stderr, flush=True)
            last = line
        if fleet_exit(view) != EXIT_RUNNING:
            return view
        await asyncio.sleep(1.0)


def cmd_fleet_start(args: argparse.Namespace) -> int:
    from contracts.fleet import check_fleet_name, parse_fleet_request
    from contracts.request import InvalidRequest

    name = args.name or Path(args.file).stem
    try:
        request = parse_fleet_request(fleet_body(args))
        check_fleet_name(name)
    except InvalidRequest as exc:
        raise CommandError(str(exc)) from None

    async def run() -> int:
        client = await connect_client(args)
        fleet = await client.start_fleet(request, name)
        print(f"started {fleet.workflow_id}: {ui_link(args.settings, fleet.workflow_id)}", file=sys.stderr)
        result: dict[str, Any] = {"workflowId": fleet.workflow_id, "clusters": len(request.requests)}
        code = EXIT_OK
        if args.wait:
            view = await _watch_fleet(fleet)
            print(fleet_table(view))
            result["counts"] = view.counts
            code = fleet_exit(view)
        emit(result)
        return code

    return asyncio.run(run())


def cmd_fleet_status(args: argparse.Namespace) -> int:
    async def run() -> int:
        fleet = (await connect_client(args)).get_fleet(args.fleet)
        try:
            view = await fleet.view()
        except WorkflowQueryFailedError as exc:
            raise CommandError(f"fleet {fleet.workflow_id} has no table: {exc}", EXIT_FAILED) from None
        print(fleet_table(view))
        emit({"workflowId": fleet.workflow_id, "counts": view.counts, "run": view.run})
        return fleet_exit(view)

    return asyncio.run(run())
