"""`ob-takeover`: the operator command.

Machine-readable output is one JSON object on the last line. Secrets are read from a prompt, stdin
or a file, never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.bindings import endpoint_key, parse_endpoint, parse_host_pattern
from contracts.errors import OperationRefused, TakeoverError, innermost_message
from contracts.settings import CONFIG_ENV, DEFAULT_CONFIG_FILE, SettingsError, load_settings
from metadb import clusters, credentials, hosts, locks, users
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_master_key, load_vault, previous_key_file, rotate_master_key
from ob_takeover.connection import ui_link
from workflows.takeover import TASK_STATUS_KEY

# Exit codes, for scripts (README, "Exit codes").
EXIT_OK = 0  # done: the task is SUCCESSFUL or ROLLED_BACK, the precheck passed
EXIT_FAILED = 1  # the task FAILED or was ABORTED, the precheck did not pass, an operation was refused
EXIT_USAGE = 2  # a wrong argument, setting or input, or something named does not exist
EXIT_RUNNING = 3  # the task is still running (or rolling back)
EXIT_UNAVAILABLE = 4  # Temporal or the metadb cannot be reached: try again later

# ObTaskStatus (the search attribute, the vocabulary everywhere) to exit code.
STATUS_EXIT = {
    "SUCCESSFUL": EXIT_OK,
    "ROLLED_BACK": EXIT_OK,
    "FAILED": EXIT_FAILED,
    "ABORTED": EXIT_FAILED,
    "ROLLBACK_FAILED": EXIT_FAILED,
    "RUNNING": EXIT_RUNNING,
    "ROLLING_BACK": EXIT_RUNNING,
    "CREATING": EXIT_RUNNING,
}


class CommandError(Exception):
    """A problem the operator can fix; printed as one line with what to do."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def open_metadb(args: argparse.Namespace) -> Database:
    db = Database(args.settings.metadb)
    db.check()
    migrate(db)
    return db


def open_vault(db: Database, args: argparse.Namespace) -> Vault:
    vault = load_vault(args.settings)
    vault.verify(db)
    return vault


def say_where_if_empty(rows: Sequence[Any], what: str, args: argparse.Namespace) -> None:
    """An empty listing names the metadb it read, so a wrong working directory or config is noticed."""
    if not rows:
        source = args.settings.sources.get("metadb", "default")
        url = Database(args.settings.metadb).url
        where = Path(url.path).resolve() if url.dialect == "sqlite" else url
        print(
            f"no {what} in metadb {where} (metadb from {source}; see `ob-takeover config show`)",
            file=sys.stderr,
        )


def _checked(parse: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse type from a parser whose ValueError message names what is wrong."""

    def check(text: str) -> str:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


def endpoint_argument(command: argparse.ArgumentParser, **kwargs: Any) -> None:
    command.add_argument(
        "--endpoint", type=_checked(parse_endpoint), action="extend", nargs="+", metavar="ADDRESS:PORT", **kwargs
    )


def hosts_argument(command: argparse.ArgumentParser, **kwargs: Any) -> None:
    command.add_argument(
        "--hosts", type=_checked(parse_host_pattern), action="extend", nargs="+", metavar="ADDRESS_OR_NETWORK", **kwargs
    )


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, sort_keys=True, default=str))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """A plain aligned table on stdout (followed by the JSON line)."""
    cells = [[str(row.get(c, "") if row.get(c) is not None else "-") for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def read_secret(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        value = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        value = getpass.getpass(prompt)
    else:
        raise CommandError(f"{prompt.strip(': ')} needed: use the --*-stdin option or a terminal")
    if not value:
        raise CommandError(f"{prompt.strip(': ')} must not be empty")
    return value


# --- commands ------------------------------------------------------------------------------------


def cmd_host_type_add(args: argparse.Namespace) -> None:
    db = open_metadb(args)
    emit({"hostTypeId": hosts.add_host_type(db, args.name, args.description or "")})


def cmd_host_type_list(args: argparse.Namespace) -> None:
    rows = hosts.list_host_types(open_metadb(args))
    table(rows, ["id", "name", "description", "created_at"])
    emit({"hostTypes": rows})


def cmd_host_type_delete(args: argparse.Namespace) -> None:
    try:
        deleted = hosts.delete_host_type(open_metadb(args), args.id)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not deleted:
        raise CommandError(f"host type {args.id} does not exist")
    emit({"deleted": args.id})


def cmd_credential_add_host(args: argparse.Namespace) -> None:
    db = open_metadb(args)
    vault = open_vault(db, args)
    passphrase = None
    if args.private_key_file:
        try:
            secret = Path(args.private_key_file).read_text()
        except OSError as exc:
            raise CommandError(f"cannot read {args.private_key_file}: {exc.strerror}") from None
        secret_type = "private_key"
        if args.passphrase_stdin:
            passphrase = read_secret("Passphrase: ", True)
    else:
        secret = read_secret("SSH password: ", args.password_stdin)
        secret_type = "password"
    name = args.name or f"{args.username}@{secret_type}-{os.urandom(3).hex()}"
    credential_id = credentials.save_credential(
        db,
        vault,
        kind=credentials.HOST,
        name=name,
        username=args.username,
        secret=secret,
        secret_type=secret_type,
        passphrase=passphrase,
        hosts=args.hosts or (),
    )
    emit({"credentialId": credential_id, "name": name})


def cmd_credential_add_cluster(args: argparse.Namespace) -> None:
    """root@sys of a cluster, for takeovers started with rootSysCredentialId instead of a password; usable
    only at the endpoints given."""
    db = open_metadb(args)
    vault = open_vault(db, args)
    secret = read_secret("root@sys password: ", args.password_stdin)
    credential_id = credentials.save_credential(
        db,
        vault,
        kind=credentials.CLUSTER,
        name=args.name or args.endpoint[0],
        username=args.username,
        secret=secret,
        endpoints=args.endpoint,
    )
    emit({"credentialId": credential_id, "name": args.name or args.endpoint[0]})


def cmd_credential_bind(args: argparse.Namespace) -> None:
    """Replace where a credential may be used: a cluster credential's endpoints, a host credential's hosts."""
    db = open_metadb(args)
    row = credentials.describe_credential(db, credential_id=args.id)
    if row is None:
        raise CommandError(f"credential {args.id} does not exist")
    wanted, given = ("endpoints", args.endpoint) if row["kind"] == credentials.CLUSTER else ("hosts", args.hosts)
    if not given:
        option = "--endpoint ADDRESS:PORT" if wanted == "endpoints" else "--hosts ADDRESS_OR_NETWORK"
        raise CommandError(f"credential {args.id} is a {row['kind']} credential: give {option}")
    credentials.set_scope(db, args.id, **{wanted: given})
    emit({"credentialId": args.id, wanted: given})


def cmd_credential_list(args: argparse.Namespace) -> None:
    rows = credentials.list_credentials(open_metadb(args), args.kind)
    for row in rows:
        row["scope"] = ", ".join(json.loads(row.pop("endpoints") or "[]") + json.loads(row.pop("hosts") or "[]"))
    table(rows, ["id", "kind", "name", "username", "secret_type", "cluster_id", "bound_cluster", "scope"])
    emit({"credentials": rows})


def cmd_credential_delete(args: argparse.Namespace) -> None:
    try:
        deleted = credentials.delete_credential(open_metadb(args), args.id)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not deleted:
        raise CommandError(f"credential {args.id} does not exist")
    emit({"deleted": args.id})


def cmd_cluster_list(args: argparse.Namespace) -> None:
    rows = clusters.list_clusters(open_metadb(args))
    say_where_if_empty(rows, "managed clusters", args)
    table(rows, ["id", "name", "ob_cluster_id", "address", "port", "version", "status"])
    emit({"clusters": rows})


def cmd_host_list(args: argparse.Namespace) -> None:
    rows = hosts.list_hosts(open_metadb(args))
    say_where_if_empty(rows, "hosts", args)
    table(rows, ["id", "ip", "ssh_port", "kind", "host_type_id", "credential_id", "reserved_by_cluster_id"])
    emit({"hosts": rows})


def cmd_host_forget_key(args: argparse.Namespace) -> None:
    """Forget a host's recorded SSH key (after a reinstall), so that the next login records the new one."""
    if not hosts.forget_host_key(open_metadb(args), args.ip):
        raise CommandError(f"host {args.ip} is not managed here (see: ob-takeover host list)")
    emit({"forgotten": args.ip})


def cmd_lock_list(args: argparse.Namespace) -> None:
    rows = locks.list_locks(open_metadb(args))
    table(rows, ["lock_key", "task_id", "workflow_id", "locked_at"])
    emit({"locks": rows})


def cmd_lock_release(args: argparse.Namespace) -> None:
    db = open_metadb(args)
    holder = next((row for row in locks.list_locks(db) if row["lock_key"] == args.key), None)
    if holder is None:
        raise CommandError(f"no lock {args.key}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("releasing a lock needs confirmation: pass --yes")
        answer = input(
            f"Release {args.key}, held by task {holder['task_id']} ({holder['workflow_id']}) since "
            f"{holder['locked_at']}? Only do this if that task is no longer running. [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandError("not released")
    locks.force_release(db, args.key)
    emit({"released": args.key, "taskId": holder["task_id"]})


def cmd_vault_rotate_key(args: argparse.Namespace) -> None:
    db = open_metadb(args)
    old = open_vault(db, args)
    path = Path(args.new_key_file)
    new_key = load_master_key(load_settings({"OB_TAKEOVER_MASTER_KEY_FILE": str(path)}), create=True)
    if new_key.key_id == old.key.key_id:
        raise CommandError(f"{path} holds the current key; give a new key file")
    count = rotate_master_key(db, old, new_key)
    settings = args.settings
    if settings.master_key:
        print(
            f"re-encrypted {count} secret(s) under the key in {path}. Set OB_TAKEOVER_MASTER_KEY to it and "
            "OB_TAKEOVER_MASTER_KEY_PREVIOUS to the old key for every worker and service, restart them, then "
            "drop the old key",
            file=sys.stderr,
        )
    else:
        # Running workers read the key file again when they meet a secret under a key they do not know.
        current = Path(settings.master_key_file)
        install_key_file(current, previous_key_file(current), path)
        print(
            f"re-encrypted {count} secret(s); {current} now holds the new key and {previous_key_file(current)} "
            "the old one; running workers switch to the new key by themselves",
            file=sys.stderr,
        )
    emit({"reencrypted": count, "keyId": new_key.key_id})


def install_key_file(current: Path, previous: Path, new: Path) -> None:
    """The new key file in the current one's place, the current one kept as `previous` (both 0600)."""
    staged = current.with_name(current.name + ".new")
    staged.unlink(missing_ok=True)
    with os.fdopen(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(new.read_text())
    if current.exists():
        previous.unlink(missing_ok=True)
        os.link(current, previous)
    staged.replace(current)  # one rename: the key file is never missing


def cmd_config_show(args: argparse.Namespace) -> None:
    rows = [
        {"setting": name, "variable": variable, "value": value, "source": source}
        for name, variable, value, source in args.settings.show()
    ]
    table(rows, ["setting", "variable", "value", "source"])
    emit({"configFile": args.settings.config_file, "settings": {row["setting"]: row["value"] for row in rows}})


def cmd_serve(args: argparse.Namespace) -> None:
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
        api = await serve(create_app(db, services=services), host or "127.0.0.1", int(port))
        codec_app = create_codec_app(codec, cors_origins=settings.codec_cors_origins, token=settings.codec_token)
        codec_server = await serve(codec_app, codec_host or "127.0.0.1", int(codec_port))
        print(f"ob-takeover service listening on http://{host or '127.0.0.1'}:{port}", flush=True)
        print(f"payload codec listening on http://{codec_host or '127.0.0.1'}:{codec_port}/codec", flush=True)
        await asyncio.gather(api.task, codec_server.task)

    asyncio.run(run())


def cmd_user_add(args: argparse.Namespace) -> None:
    password = read_secret("Password: ", args.password_stdin)
    try:
        user_id = users.add_user(open_metadb(args), args.name, args.role, password)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    emit({"userId": user_id})


def cmd_user_list(args: argparse.Namespace) -> None:
    rows = users.list_users(open_metadb(args))
    table(rows, ["id", "name", "role", "created_at", "updated_at"])
    emit({"users": rows})


def cmd_user_delete(args: argparse.Namespace) -> None:
    users.delete_user(open_metadb(args), args.name)
    emit({"deleted": args.name})


def cmd_user_passwd(args: argparse.Namespace) -> None:
    password = read_secret("New password: ", args.password_stdin)
    try:
        users.set_password(open_metadb(args), args.name, password)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    emit({"user": args.name, "passwordChanged": True})


# --- takeovers: start, watch, operate -------------------------------------------------------------


def display_status(task: Any) -> str:
    """The task's status in the vocabulary of the ObTaskStatus search attribute."""
    if task.operation.value == "ROLLBACK":
        return {"RUNNING": "ROLLING_BACK", "FAILED": "ROLLBACK_FAILED", "SUCCESSFUL": "ROLLED_BACK"}[task.status.value]
    return str(task.status.value)


def task_table(task: Any, status: str | None = None) -> str:
    """OCP's task as an aligned table: one row per subtask with its node, state, runs and times; the
    header's status is ObTaskStatus's (`status`, else worked out from the task)."""
    cluster = f"cluster {task.cluster_id}" if task.cluster_id is not None else "cluster not recorded yet"
    lines = [
        f"task {task.id} '{task.name}' {cluster}: {status or display_status(task)}",
        f"{'ID':<12} {'SUBTASK':<42} {'NODE':<22} {'STATUS':<11} {'RUNS':>4}  {'START':<23} END",
    ]
    for s in task.subtasks:
        lines.append(
            f"{s.id:<12} {s.name:<42} {(s.node or '-'):<22} {s.status.value:<11} {s.run_time:>4}  "
            f"{(s.start_time or '-'):<23} {s.finish_time or '-'}"
        )
    return "\n".join(lines)


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


def _parse(body: dict[str, Any]) -> Any:
    from contracts.request import InvalidRequest, parse_request

    try:
        return parse_request(body)
    except InvalidRequest as exc:
        raise CommandError(str(exc)) from None


async def _watch(takeover: Any) -> Any:
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
        running = [f"{s.name}{' · ' + s.node if s.node else ''}" for s in task.subtasks if s.status.value == "RUNNING"]
        done = sum(s.status.value == "SUCCESSFUL" for s in task.subtasks)
        line = f"{task.status.value} {done}/{len(task.subtasks)}" + (
            f" running: {', '.join(running[:3])}" if running else ""
        )
        if line != last:
            print(line, file=sys.stderr, flush=True)
            last = line
        if task.status.value != "RUNNING":
            return task
        await asyncio.sleep(0.5)


async def _started(args: argparse.Namespace, task_workflow: Any) -> int:
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


def cmd_start(args: argparse.Namespace) -> int:
    from ob_takeover.client import TakeoverClient

    request = _parse(request_body(args))

    async def run() -> int:
        client = await TakeoverClient.connect(settings=args.settings)
        takeover = await client.start(request)
        return await _started(args, takeover)

    return asyncio.run(run())


def cmd_precheck(args: argparse.Namespace) -> int:
    from ob_takeover.client import TakeoverClient

    request = _parse(request_body(args))

    async def run() -> int:
        client = await TakeoverClient.connect(settings=args.settings)
        report = await client.precheck(request)
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


def cmd_release(args: argparse.Namespace) -> int:
    from ob_takeover.client import TakeoverClient

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
        client = await TakeoverClient.connect(settings=args.settings)
        release = await client.release(
            int(record["id"]),
            record["address"],
            int(record["port"]),
            config_url=config_url,
            root_sys_credential_id=args.root_credential_id,
        )
        return await _started(args, release)

    return asyncio.run(run())


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


def fleet_table(view: Any) -> str:
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


def fleet_exit(view: Any) -> int:
    """0 when every member ended SUCCESSFUL or ROLLED_BACK, 3 while one works, else 1."""
    if all(m.status.value in ("SUCCESSFUL", "ROLLED_BACK") for m in view.members):
        return EXIT_OK
    return EXIT_RUNNING if view.working else EXIT_FAILED


async def _watch_fleet(fleet: Any) -> Any:
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
    from ob_takeover.client import TakeoverClient

    name = args.name or Path(args.file).stem
    try:
        request = parse_fleet_request(fleet_body(args))
        check_fleet_name(name)
    except InvalidRequest as exc:
        raise CommandError(str(exc)) from None

    async def run() -> int:
        client = await TakeoverClient.connect(settings=args.settings)
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
    from ob_takeover.client import TakeoverClient

    async def run() -> int:
        fleet = (await TakeoverClient.connect(settings=args.settings)).get_fleet(args.fleet)
        try:
            view = await fleet.view()
        except WorkflowQueryFailedError as exc:
            raise CommandError(f"fleet {fleet.workflow_id} has no table: {exc}", EXIT_FAILED) from None
        print(fleet_table(view))
        emit({"workflowId": fleet.workflow_id, "counts": view.counts, "run": view.run})
        return fleet_exit(view)

    return asyncio.run(run())


def _operate(args: argparse.Namespace, *, operation: str) -> int:
    from ob_takeover.client import TakeoverClient

    async def run() -> int:
        takeover = (await TakeoverClient.connect(settings=args.settings)).get(args.workflow_id)
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
        for subtask in (s for s in task.subtasks if s.status.value == "FAILED"):
            tail = (await takeover.subtask_log(subtask.id)).strip().splitlines()[-5:]
            print(f"\nsubtask {subtask.id} {subtask.name} {subtask.node or ''} FAILED:\n  " + "\n  ".join(tail))
        emit({"workflowId": args.workflow_id, "taskId": task.id, "status": status})
        return STATUS_EXIT.get(status, EXIT_FAILED)

    return asyncio.run(run())


async def _without_task(takeover: Any, status: WorkflowExecutionStatus | None) -> int:
    """A takeover whose task does not exist: its topology is being read, or it failed before (a wrong
    body or password, an unreachable cluster); the reason, in one line."""
    if status == WorkflowExecutionStatus.RUNNING:
        emit({"workflowId": takeover.workflow_id, "status": "CREATING"})
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


def _one_line(error: Exception, workflow_id: str | None) -> tuple[str, int]:
    """What went wrong and what to do, in one line, with the exit code."""
    if isinstance(error, CommandError):
        return str(error), error.code
    if isinstance(error, TakeoverError):
        return str(error), EXIT_UNAVAILABLE if error.retryable else EXIT_USAGE
    if isinstance(error, SettingsError):
        return f"{error}; see `ob-takeover config show`", EXIT_USAGE
    if isinstance(error, RPCError):
        if error.status == RPCStatusCode.NOT_FOUND and workflow_id:
            return (
                f"no takeover workflow {workflow_id}; its id is takeover-<address>-<port> "
                "(`temporal workflow list --query \"WorkflowType='TakeOverCluster'\"` lists them)",
                EXIT_USAGE,
            )
        if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return f"Temporal is unreachable ({error.message}); check temporal_address", EXIT_UNAVAILABLE
        return f"Temporal refused: {error.message}", EXIT_USAGE
    if isinstance(error, WorkflowFailureError):
        return f"the workflow failed: {innermost_message(error)}", EXIT_FAILED
    if isinstance(error, RuntimeError | ConnectionError | TimeoutError):  # e.g. Temporal unreachable at connect
        return f"{error}; check that Temporal runs at the configured address", EXIT_UNAVAILABLE
    if isinstance(error, ValueError | OSError):
        return str(error), EXIT_USAGE
    return f"{type(error).__name__}: {error} (run with --debug for the traceback)", EXIT_FAILED


# --- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ob-takeover", description="Take OceanBase clusters into management.")
    parser.add_argument(
        "--config", help=f"TOML settings file (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG_FILE} if present)"
    )
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(
        group: Any, name: str, handler: Callable[[argparse.Namespace], int | None], help_text: str
    ) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = group.add_parser(name, help=help_text)
        command.set_defaults(handler=handler)
        return command

    config = commands.add_parser("config", help="settings").add_subparsers(dest="action", required=True)
    add(config, "show", cmd_config_show, "the effective settings, where each comes from, secrets masked")

    serve = add(commands, "serve", cmd_serve, "run the HTTP service: OCP's REST API, config server, payload codec")
    serve.add_argument("--listen", default="127.0.0.1:8080", help="REST API and config server")
    serve.add_argument(
        "--codec-listen", default="127.0.0.1:8081", help="the payload codec (for the Temporal UI and CLI only)"
    )

    user = commands.add_parser("user", help="REST API users").add_subparsers(dest="action", required=True)
    command = add(user, "add", cmd_user_add, "add an API user; prints userId")
    command.add_argument("--name", required=True)
    command.add_argument("--role", required=True, choices=users.ROLES)
    command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add(user, "list", cmd_user_list, "list API users (never their password hashes)")
    add(user, "delete", cmd_user_delete, "delete an API user").add_argument("name")
    command = add(user, "passwd", cmd_user_passwd, "set an API user's password")
    command.add_argument("name")
    command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    host_type = commands.add_parser("host-type", help="host types").add_subparsers(dest="action", required=True)
    command = add(host_type, "add", cmd_host_type_add, "add a host type; prints hostTypeId")
    command.add_argument("--name", required=True)
    command.add_argument("--description")
    add(host_type, "list", cmd_host_type_list, "list host types")
    add(host_type, "delete", cmd_host_type_delete, "delete an unused host type").add_argument("id", type=int)

    credential = commands.add_parser("credential", help="the password box").add_subparsers(dest="action", required=True)
    command = add(credential, "add-host", cmd_credential_add_host, "add an SSH credential; prints credentialId")
    command.add_argument("--username", required=True)
    secret = command.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    secret.add_argument("--private-key-file")
    command.add_argument("--passphrase-stdin", action="store_true", help="read the key's passphrase from stdin")
    command.add_argument("--name")
    hosts_argument(command, help="the only hosts it may log in to (required with host_key_policy tofu)")
    command = add(
        credential, "add-cluster", cmd_credential_add_cluster, "add root@sys of a cluster; prints credentialId"
    )
    endpoint_argument(command, required=True, help="where the cluster's sys tenant answers; the only place it is used")
    command.add_argument("--name", help="a name for it (default: the first endpoint)")
    command.add_argument("--username", default="root@sys")
    command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    command = add(credential, "bind", cmd_credential_bind, "set where a credential may be used")
    command.add_argument("id", type=int)
    endpoint_argument(command, help="a cluster credential's endpoints (replaces them)")
    hosts_argument(command, help="a host credential's hosts (replaces them)")
    command = add(credential, "list", cmd_credential_list, "list credentials (never their secrets)")
    command.add_argument("--kind", choices=[credentials.HOST, credentials.CLUSTER, credentials.PLATFORM])
    add(credential, "delete", cmd_credential_delete, "delete an unused credential").add_argument("id", type=int)

    cluster = commands.add_parser("cluster", help="managed clusters").add_subparsers(dest="action", required=True)
    add(cluster, "list", cmd_cluster_list, "list managed clusters")
    host = commands.add_parser("host", help="managed hosts").add_subparsers(dest="action", required=True)
    add(host, "list", cmd_host_list, "list hosts")
    command = add(host, "forget-key", cmd_host_forget_key, "forget a host's recorded SSH key (after a reinstall)")
    command.add_argument("ip")
    lock = commands.add_parser("lock", help="cluster locks").add_subparsers(dest="action", required=True)
    add(lock, "list", cmd_lock_list, "list cluster locks")
    command = add(lock, "release", cmd_lock_release, "force-release a stale lock")
    command.add_argument("key")
    command.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def body_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--body", help="JSON file with the request body")
        command.add_argument("--address")
        command.add_argument("--port", type=int)
        command.add_argument("--connection-mode", choices=["direct", "proxy"])
        command.add_argument("--cluster-name")
        command.add_argument("--ob-cluster-id", type=int)
        command.add_argument("--root-credential-id", type=int, help="root@sys from the password box")
        command.add_argument("--host-type-id", type=int)
        command.add_argument("--credential-id", type=int, help="SSH credential for unmanaged hosts")
        command.add_argument("--ssh-port", type=int, default=22)
        command.add_argument("--password-stdin", action="store_true", help="read rootSysPassword from stdin")

    command = add(commands, "start", cmd_start, "start a takeover; prints the workflow id and a UI link")
    body_options(command)
    command.add_argument("--wait", action="store_true", help="show progress until the task ends or fails")
    command = add(commands, "precheck", cmd_precheck, "run the takeover precheck and print its report")
    body_options(command)
    command.add_argument(
        "--plan", action="store_true", help="also print every statement and command the takeover would send"
    )
    for name, operation, help_text, needs_subtask in (
        ("status", "status", "the task table, and the log tail of failed subtasks", False),
        ("retry", "retry", "run every FAILED subtask again", False),
        ("retry-subtask", "retry_subtask", "run one FAILED subtask again", True),
        ("skip-subtask", "skip_subtask", "mark a FAILED subtask SUCCESSFUL without running it", True),
        ("cancel-subtask", "cancel_subtask", "stop a RUNNING subtask (it becomes FAILED)", True),
        ("rollback", "rollback", "undo the takeover's work in reverse order", False),
        ("abort", "abort", "stop the takeover and release the cluster lock", False),
        ("logs", "logs", "one subtask's log", True),
    ):
        command = add(commands, name, functools.partial(_operate, operation=operation), help_text)
        command.add_argument("workflow_id")
        if needs_subtask:
            command.add_argument("subtask_id", type=int)
        if operation not in ("status", "abort", "logs"):
            command.add_argument("--wait", action="store_true", help="show progress until the task ends or fails")
        if operation == "status":
            command.add_argument("--timeline", metavar="FILE.svg", help="also draw the task's timeline as an SVG file")

    command = add(
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
    command.add_argument("--wait", action="store_true", help="show progress until the task ends or fails")

    fleet = commands.add_parser("fleet", help="take many clusters over at once").add_subparsers(
        dest="action", required=True
    )
    command = add(fleet, "start", cmd_fleet_start, "start a fleet takeover from a YAML or JSON file of clusters")
    command.add_argument("--file", required=True, help="requests: [takeover bodies], defaults: {…}, maxConcurrent")
    command.add_argument("--name", help="the fleet's name; its workflow id is fleet-NAME (default: the file's stem)")
    command.add_argument("--max-concurrent", type=int, help="takeovers running at once (default: the file's, else 10)")
    command.add_argument("--wait", action="store_true", help="show progress until no member works any more")
    command = add(fleet, "status", cmd_fleet_status, "the fleet table: every cluster's status and failed subtask")
    command.add_argument("fleet", help="the fleet's name or workflow id")

    vault = commands.add_parser("vault", help="the password box's master key").add_subparsers(
        dest="action", required=True
    )
    command = add(vault, "rotate-key", cmd_vault_rotate_key, "re-encrypt every secret under a new master key")
    command.add_argument("--new-key-file", required=True, help="created (0600) if missing")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.settings = load_settings(config_file=args.config)
        code = args.handler(args) or EXIT_OK
    except BrokenPipeError:  # `… | head`: the reader has what it wanted
        os._exit(EXIT_OK)
    except Exception as exc:
        message, code = _one_line(exc, getattr(args, "workflow_id", None))
        print(f"ob-takeover: {message}", file=sys.stderr)
        if args.debug:
            traceback.print_exception(exc)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    # Exit without interpreter teardown: the Temporal SDK can crash at exit in short-lived commands.
    os._exit(code)
