"""`ob-takeover start`, `precheck`, `tasks`, `status`, the operations on a task (`retry`, `rollback`, `abort` …) and
`release`: the commands that start a task workflow or follow and operate one."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowQueryFailedError
from temporalio.service import RPCError

from contracts.endpoints import endpoint_key, parse_endpoint
from contracts.errors import OperationRefused, innermost_message
from contracts.task_view import RecordedStatus, SubtaskStatus, TaskStatus, recorded_status
from metadb import clusters, tasks
from ob_takeover.cli.arguments import Subcommands, add_command
from ob_takeover.cli.console import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_RUNNING,
    STATUS_EXIT,
    CommandError,
    aligned,
    emit,
    read_secret,
    say_where_if_empty,
    table,
)
from ob_takeover.cli.deps import connect_client, open_metadb
from ob_takeover.connection import ui_link
from workflows.takeover import TASK_STATUS_KEY

if TYPE_CHECKING:
    from contracts.request import TakeOverRequest
    from contracts.task_view import TaskView
    from ob_takeover.client import Takeover

WAIT_HELP = "show progress until the task ends or fails"

# The operations on a takeover's task: command, TakeoverClient method, help, whether it names a subtask.
OPERATIONS = (
    ("status", "status", "the task table, and the log tail of failed subtasks", False),
    ("retry", "retry", "run every FAILED subtask again", False),
    ("retry-subtask", "retry_subtask", "run one FAILED subtask again", True),
    ("skip-subtask", "skip_subtask", "mark a FAILED subtask SUCCESSFUL without running it", True),
    ("cancel-subtask", "cancel_subtask", "stop a RUNNING subtask (it becomes FAILED)", True),
    ("rollback", "rollback", "undo the takeover's work in reverse order", False),
    ("abort", "abort", "stop the takeover and release the cluster lock", False),
    ("logs", "logs", "one subtask's log", True),
)


def add_task_parsers(commands: Subcommands) -> None:
    """`start`, `precheck`, the operations on a task, and `release`."""
    command = add_command(commands, "start", cmd_start, "start a takeover; prints the workflow id and a UI link")
    _add_body_options(command)
    command.add_argument("--wait", action="store_true", help=WAIT_HELP)
    command = add_command(commands, "precheck", cmd_precheck, "run the takeover precheck and print its report")
    _add_body_options(command)
    command.add_argument(
        "--plan", action="store_true", help="also print every statement and command the takeover would send"
    )
    command = add_command(commands, "tasks", cmd_tasks, "the tasks, newest first: takeovers and releases")
    command.add_argument("--cluster-id", type=int, help="only this cluster's tasks")
    command.add_argument(
        "--status", choices=[s.value for s in RecordedStatus if s is not RecordedStatus.REJECTED], help="only these"
    )
    command.add_argument("--limit", type=int, default=20, help="at most this many (default: 20)")
    _add_operation_parsers(commands)
    command = add_command(
        commands,
        "release",
        cmd_release,
        "move a managed cluster out of management: undo its takeover, data untouched (proxyro stays)",
    )
    command.add_argument("cluster", help="the managed cluster's id or ADDRESS:PORT (`ob-takeover cluster list`)")
    target = command.add_mutually_exclusive_group()
    target.add_argument("--config-url", help="leave obconfig_url at this URL (default: as before the takeover)")
    target.add_argument("--empty-config-url", action="store_true", help="leave obconfig_url empty")
    command.add_argument("--root-credential-id", type=int, help="root@sys from the password box (default: saved one)")
    command.add_argument("--wait", action="store_true", help=WAIT_HELP)


def _add_body_options(command: argparse.ArgumentParser) -> None:
    """The takeover request's fields as options, for `start` and `precheck`."""
    command.add_argument("--body", help="JSON file with the request body")
    command.add_argument(
        "--address", help="the cluster's SQL endpoint: an observer, or OBProxy with --connection-mode proxy"
    )
    command.add_argument("--port", type=int, help="its SQL port (2881 on an observer, 2883 on OBProxy)")
    command.add_argument("--connection-mode", choices=["direct", "proxy"])
    command.add_argument("--cluster-name")
    command.add_argument("--ob-cluster-id", type=int)
    command.add_argument("--root-credential-id", type=int, help="root@sys from the password box")
    command.add_argument("--host-type-id", type=int, help="host type of hosts not managed yet (`host-type list`)")
    command.add_argument("--credential-id", type=int, help="SSH credential for unmanaged hosts")
    command.add_argument("--ssh-port", type=int, default=22)
    command.add_argument("--password-stdin", action="store_true", help="read rootSysPassword from stdin")


def _add_operation_parsers(commands: Subcommands) -> None:
    """One command per operation on a takeover's task, each given the workflow id."""
    for name, operation, help_text, needs_subtask in OPERATIONS:
        command = add_command(commands, name, functools.partial(_operate, operation=operation), help_text)
        command.add_argument("workflow_id")
        if needs_subtask:
            command.add_argument("subtask_id", type=int)
        if operation not in ("status", "abort", "logs"):
            command.add_argument("--wait", action="store_true", help=WAIT_HELP)
        if operation == "status":
            command.add_argument("--timeline", metavar="FILE.svg", help="also draw the task's timeline as an SVG file")


# --- the task, as the operator sees it -------------------------------------------------------------


def display_status(task: TaskView) -> str:
    """The task's status in the vocabulary of the ObTaskStatus search attribute."""
    return recorded_status(task.status, task.operation)


def task_table(task: TaskView, status: str | None = None) -> str:
    """OCP's task as an aligned table: one row per subtask with its node, state, runs and times; the
    header's status is ObTaskStatus's (`status`, else worked out from the task)."""
    cluster = f"cluster {task.cluster_id}" if task.cluster_id is not None else "cluster not recorded yet"
    rows = [
        {"id": s.id, "subtask": s.name, "node": s.node, "status": s.status.value, "runs": s.run_time,
         "start": s.start_time, "end": s.finish_time}
        for s in task.subtasks
    ]  # fmt: skip
    lines = [f"task {task.id} '{task.name}' {cluster}: {status or display_status(task)}"]
    lines += aligned(rows, ["id", "subtask", "node", "status", "runs", "start", "end"])
    return "\n".join(lines)


async def _watch(takeover: Takeover) -> TaskView:
    """Print progress lines until the task ends or waits for an operator."""
    last = ""
    while True:
        try:
            task = await takeover.task()
        except WorkflowQueryFailedError:  # not created yet while the topology is read, or never created
            status = (await takeover.describe()).status
            if status != WorkflowExecutionStatus.RUNNING:
                await _without_task(takeover, status)  # says why, in one line
            await asyncio.sleep(0.5)
            continue
        running = [
            f"{s.name}{' · ' + s.node if s.node else ''}" for s in task.subtasks if s.status is SubtaskStatus.RUNNING
        ]
        done = sum(s.status is SubtaskStatus.SUCCESSFUL for s in task.subtasks)
        line = f"{task.status.value} {done}/{len(task.subtasks)}" + (
            f" running: {', '.join(running[:3])}" if running else ""
        )
        if line != last:
            print(line, file=sys.stderr, flush=True)
            last = line
        if task.status is not TaskStatus.RUNNING:
            return task
        await asyncio.sleep(0.5)


async def _without_task(takeover: Takeover, status: WorkflowExecutionStatus | None) -> int:
    """A takeover whose task does not exist: its topology is being read, or it failed before (a wrong
    body or password, an unreachable cluster); the reason, in one line."""
    if status == WorkflowExecutionStatus.RUNNING:
        emit({"workflowId": takeover.workflow_id, "status": RecordedStatus.CREATING})
        print("the takeover is reading the cluster's topology; its task exists in a moment", file=sys.stderr)
        return EXIT_RUNNING
    try:
        await takeover.result()
    except WorkflowFailureError as exc:
        what = f"{_kind(takeover.workflow_id)} {takeover.workflow_id}"
        raise CommandError(f"{what} failed before its task existed: {innermost_message(exc)}", EXIT_FAILED) from None
    raise CommandError(
        f"{_kind(takeover.workflow_id)} {takeover.workflow_id} ended {status.name if status else 'unknown'} "
        "without a task",
        EXIT_FAILED,
    )


def _kind(workflow_id: str) -> str:
    """What a task workflow is, by its id: a takeover or a release."""
    return "release" if workflow_id.startswith("release-") else "takeover"


async def _started(args: argparse.Namespace, task_workflow: Takeover) -> int:
    """Say where a task workflow just started is; with --wait, follow it to its end and print its table."""
    link = ui_link(args.settings, task_workflow.workflow_id)
    print(f"started {task_workflow.workflow_id}: {link}", file=sys.stderr)
    result: dict[str, Any] = {"workflowId": task_workflow.workflow_id, "ui": link}
    code = EXIT_OK
    if args.wait:
        task = await _watch(task_workflow)
        print(task_table(task))
        result["status"] = display_status(task)
        result["taskId"] = task.id
        code = STATUS_EXIT.get(result["status"], EXIT_FAILED)
    emit(result)
    return code


# --- start and precheck ----------------------------------------------------------------------------


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """The takeover body from --body FILE and flags; the password from stdin, env or a prompt."""
    body: dict[str, Any] = {}
    if args.body:
        try:
            body = json.loads(Path(args.body).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"cannot read the body from {args.body}: {exc}") from None
    flags = {
        "address": args.address,
        "port": args.port,
        "connectionMode": args.connection_mode,
        "clusterName": args.cluster_name,
        "obClusterId": args.ob_cluster_id,
        "rootSysCredentialId": args.root_credential_id,
    }
    body.update({k: v for k, v in flags.items() if v is not None})
    missing = [option for option, field in (("--address", "address"), ("--port", "port")) if field not in body]
    if missing:  # before any password is asked for
        raise CommandError(f"give {' and '.join(missing)} (or a --body file with them): the cluster to take over")
    if args.host_type_id or args.credential_id:
        body["hostInfo"] = {
            **body.get("hostInfo", {}),
            "hostTypeId": args.host_type_id,
            "credentialId": args.credential_id,
            "sshPort": args.ssh_port,
        }
    if "rootSysPassword" not in body and "rootSysCredentialId" not in body:
        body["rootSysPassword"] = args.settings.root_password or read_secret("root@sys password: ", args.password_stdin)
    return body


def _parse(body: dict[str, Any]) -> TakeOverRequest:
    from contracts.request import InvalidRequest, parse_request

    try:
        return parse_request(body)
    except InvalidRequest as exc:
        raise CommandError(str(exc)) from None


def cmd_start(args: argparse.Namespace) -> int:
    request = _parse(request_body(args))

    async def run() -> int:
        client = await connect_client(args)
        takeover = await client.start(request)
        return await _started(args, takeover)

    return asyncio.run(run())


def cmd_precheck(args: argparse.Namespace) -> int:
    request = _parse(request_body(args))

    async def run() -> int:
        client = await connect_client(args)
        report = await client.precheck(request)
        if report.cluster_name is None:
            print(f"the cluster at {request.endpoint} could not be read: see the FAILED items")
        else:
            print(
                f"cluster {report.cluster_name} (id {report.ob_cluster_id}), OceanBase {report.version}: "
                f"{len(report.zones)} zones, {len(report.servers)} servers, {len(report.hosts)} hosts"
            )
        table([i.model_dump() for i in report.items], ["status", "code", "name", "node", "message"])
        if args.plan:
            print("\nPlan: what the takeover would send (secrets masked)")
            for step in report.plan:
                where = f" · {step.node}" if step.node else ""
                note = f"  ({step.note})" if step.note else ""
                print(f"\n{step.subtask}{where}{note}")
                for statement in step.statements:
                    print(f"  SQL  {statement}")
                for command in step.commands:
                    print(f"  SSH  {command}")
        emit({"passed": report.passed, "failed": len(report.failures()), "seconds": report.seconds})
        return EXIT_OK if report.passed else EXIT_FAILED

    return asyncio.run(run())


# --- operations on a task --------------------------------------------------------------------------


def _operate(args: argparse.Namespace, *, operation: str) -> int:
    async def run() -> int:
        takeover = (await connect_client(args)).get(args.workflow_id)
        description = await takeover.describe()
        try:
            if operation == "status":
                task = await takeover.task()
            elif operation == "abort":
                await takeover.abort()
                emit({"workflowId": args.workflow_id, "aborted": True})
                return EXIT_OK
            elif operation == "logs":
                print(await takeover.subtask_log(args.subtask_id))
                emit({"workflowId": args.workflow_id, "subtaskId": args.subtask_id})
                return EXIT_OK
            elif operation in ("retry", "rollback"):
                task = await getattr(takeover, operation)()
            else:
                task = await getattr(takeover, operation)(args.subtask_id)
        except OperationRefused as exc:
            raise CommandError(f"refused: {exc}", EXIT_FAILED) from None
        except WorkflowQueryFailedError:
            return await _without_task(takeover, description.status)
        if getattr(args, "wait", False):
            task = await _watch(takeover)
            description = await takeover.describe()
        status = description.typed_search_attributes.get(TASK_STATUS_KEY) or display_status(task)
        print(task_table(task, status))
        if getattr(args, "timeline", None):
            from ob_takeover.timeline import render_timeline

            Path(args.timeline).write_text(render_timeline(task))
            print(f"timeline written to {args.timeline}", file=sys.stderr)
        for subtask in (s for s in task.subtasks if s.status is SubtaskStatus.FAILED):
            tail = (await takeover.subtask_log(subtask.id)).strip().splitlines()[-5:]
            print(f"\nsubtask {subtask.id} {subtask.name} {subtask.node or ''} FAILED:\n  " + "\n  ".join(tail))
        emit({"workflowId": args.workflow_id, "taskId": task.id, "status": status})
        return STATUS_EXIT.get(status, EXIT_FAILED)

    return asyncio.run(run())


# --- the task list ---------------------------------------------------------------------------------


def cmd_tasks(args: argparse.Namespace) -> int:
    """The registry's tasks; those it records as running get their live status from Temporal (FAILED when a
    subtask waits for an operator), or show as recorded when Temporal cannot be reached."""
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    db = open_metadb(args)
    live_kinds = [RecordedStatus.RUNNING, RecordedStatus.ROLLING_BACK]
    # A task recorded as running may have failed or ended since: filtered once its live status is known.
    statuses = [args.status, *live_kinds] if args.status else None
    limit = None if args.status else args.limit
    rows = tasks.list_tasks(db, cluster_id=args.cluster_id, statuses=statuses, limit=limit)
    running = [row for row in rows if row["status"] in live_kinds]
    live = asyncio.run(_live_statuses(args, running)) if running else {}
    listed = [
        {"id": row["task_id"], "name": row["name"], "cluster": row["cluster_id"],
         "status": live.get(row["task_id"], row["status"]), "creator": row["creator"],
         "created": row["created_at"], "workflow": row["workflow_id"]}
        for row in rows
    ]  # fmt: skip
    listed = [task for task in listed if args.status in (None, task["status"])][: args.limit]
    say_where_if_empty(listed, "tasks", args)
    table(listed, ["id", "name", "cluster", "status", "creator", "created", "workflow"])
    emit({"tasks": listed})
    return EXIT_OK


async def _live_statuses(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[int, str]:
    """ObTaskStatus of each row's workflow run, by task id; none when Temporal cannot be reached."""
    try:
        client = (await connect_client(args)).client
    except (RuntimeError, ConnectionError, TimeoutError) as exc:
        print(f"Temporal cannot be reached ({exc}); running tasks show their recorded status", file=sys.stderr)
        return {}
    found: dict[int, str] = {}
    for row in rows:
        handle = client.get_workflow_handle(row["workflow_id"], run_id=row["run_id"] or None)
        try:
            description = await handle.describe()
        except RPCError:
            continue
        status = description.typed_search_attributes.get(TASK_STATUS_KEY)
        if status:
            found[int(row["task_id"])] = status
    return found


# --- release ---------------------------------------------------------------------------------------


def cmd_release(args: argparse.Namespace) -> int:
    db = open_metadb(args)
    if args.cluster.isdigit():
        record = clusters.get_cluster(db, int(args.cluster))
    else:
        endpoint = parse_endpoint(args.cluster)
        record = next(
            (r for r in clusters.list_clusters(db) if endpoint_key(r["address"], int(r["port"])) == endpoint), None
        )
    if record is None:
        raise CommandError(f"no managed cluster {args.cluster}; `ob-takeover cluster list` lists them")
    config_url = "" if args.empty_config_url else args.config_url

    async def run() -> int:
        client = await connect_client(args)
        release = await client.release(
            int(record["id"]),
            config_url=config_url,
            root_sys_credential_id=args.root_credential_id,
        )
        return await _started(args, release)

    return asyncio.run(run())
