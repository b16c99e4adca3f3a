"""`ob-takeover`: the operator command.

Machine-readable output is one JSON object on the last line. Secrets are read from a prompt, stdin
or a file, never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from metadb import clusters, credentials, hosts, locks
from metadb.db import Database, MetadbUnavailable, metadb_url_from_env
from metadb.migrate import migrate
from metadb.vault import MasterKeyError, Vault, load_master_key, rotate_master_key
from ob_takeover.codec import CodecKeyError


class CommandError(Exception):
    """A problem the operator can fix; printed as one line, exit code 2."""


def open_metadb() -> Database:
    db = Database(metadb_url_from_env())
    db.check()
    migrate(db)
    return db


def open_vault(db: Database) -> Vault:
    vault = Vault(load_master_key())
    vault.verify(db)
    return vault


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
    db = open_metadb()
    emit({"hostTypeId": hosts.add_host_type(db, args.name, args.description or "")})


def cmd_host_type_list(args: argparse.Namespace) -> None:
    rows = hosts.list_host_types(open_metadb())
    table(rows, ["id", "name", "description", "created_at"])
    emit({"hostTypes": rows})


def cmd_host_type_delete(args: argparse.Namespace) -> None:
    try:
        deleted = hosts.delete_host_type(open_metadb(), args.id)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not deleted:
        raise CommandError(f"host type {args.id} does not exist")
    emit({"deleted": args.id})


def cmd_credential_add_host(args: argparse.Namespace) -> None:
    db = open_metadb()
    vault = open_vault(db)
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
    )
    emit({"credentialId": credential_id, "name": name})


def cmd_credential_add_cluster(args: argparse.Namespace) -> None:
    """root@sys of a cluster, for takeovers started with rootSysCredentialId instead of a password."""
    db = open_metadb()
    vault = open_vault(db)
    secret = read_secret("root@sys password: ", args.password_stdin)
    credential_id = credentials.save_credential(
        db, vault, kind=credentials.CLUSTER, name=args.name, username=args.username, secret=secret
    )
    emit({"credentialId": credential_id, "name": args.name})


def cmd_credential_list(args: argparse.Namespace) -> None:
    rows = credentials.list_credentials(open_metadb(), args.kind)
    table(rows, ["id", "kind", "name", "username", "secret_type", "cluster_id"])
    emit({"credentials": rows})


def cmd_credential_delete(args: argparse.Namespace) -> None:
    try:
        deleted = credentials.delete_credential(open_metadb(), args.id)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not deleted:
        raise CommandError(f"credential {args.id} does not exist")
    emit({"deleted": args.id})


def cmd_cluster_list(args: argparse.Namespace) -> None:
    rows = clusters.list_clusters(open_metadb())
    table(rows, ["id", "name", "ob_cluster_id", "address", "port", "version", "status"])
    emit({"clusters": rows})


def cmd_host_list(args: argparse.Namespace) -> None:
    rows = hosts.list_hosts(open_metadb())
    table(rows, ["id", "ip", "ssh_port", "kind", "host_type_id", "credential_id", "reserved_by_cluster_id"])
    emit({"hosts": rows})


def cmd_lock_list(args: argparse.Namespace) -> None:
    rows = locks.list_locks(open_metadb())
    table(rows, ["lock_key", "task_id", "workflow_id", "locked_at"])
    emit({"locks": rows})


def cmd_lock_release(args: argparse.Namespace) -> None:
    db = open_metadb()
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
    db = open_metadb()
    old = open_vault(db)
    path = Path(args.new_key_file)
    new_key = load_master_key({"OB_TAKEOVER_MASTER_KEY_FILE": str(path)}, create=True)
    if new_key.key_id == old.key.key_id:
        raise CommandError(f"{path} holds the current key; give a new key file")
    count = rotate_master_key(db, old, new_key)
    print(f"re-encrypted {count} secret(s); start workers and commands with the new key ({path})", file=sys.stderr)
    emit({"reencrypted": count, "keyId": new_key.key_id})


def cmd_serve(args: argparse.Namespace) -> None:
    from ob_takeover.codec import EncryptionCodec, load_codec_keys
    from ob_takeover.service import serve

    host, _, port = args.listen.rpartition(":")
    db = open_metadb()
    codec = EncryptionCodec(load_codec_keys())

    async def run() -> None:
        runner = await serve(db, host or "127.0.0.1", int(port), codec)
        print(f"ob-takeover service listening on http://{host or '127.0.0.1'}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())


# --- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ob-takeover", description="Take OceanBase clusters into management.")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(
        group: Any, name: str, handler: Callable[[argparse.Namespace], None], help_text: str
    ) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = group.add_parser(name, help=help_text)
        command.set_defaults(handler=handler)
        return command

    serve = add(commands, "serve", cmd_serve, "run the HTTP service: config server and payload codec")
    serve.add_argument("--listen", default="127.0.0.1:8080")

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
    command = add(
        credential, "add-cluster", cmd_credential_add_cluster, "add root@sys of a cluster; prints credentialId"
    )
    command.add_argument("--name", required=True, help="e.g. the cluster's address:port")
    command.add_argument("--username", default="root@sys")
    command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    command = add(credential, "list", cmd_credential_list, "list credentials (never their secrets)")
    command.add_argument("--kind", choices=[credentials.HOST, credentials.CLUSTER, credentials.PLATFORM])
    add(credential, "delete", cmd_credential_delete, "delete an unused credential").add_argument("id", type=int)

    cluster = commands.add_parser("cluster", help="managed clusters").add_subparsers(dest="action", required=True)
    add(cluster, "list", cmd_cluster_list, "list managed clusters")
    host = commands.add_parser("host", help="managed hosts").add_subparsers(dest="action", required=True)
    add(host, "list", cmd_host_list, "list hosts")
    lock = commands.add_parser("lock", help="cluster locks").add_subparsers(dest="action", required=True)
    add(lock, "list", cmd_lock_list, "list cluster locks")
    command = add(lock, "release", cmd_lock_release, "force-release a stale lock")
    command.add_argument("key")
    command.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    vault = commands.add_parser("vault", help="the password box's master key").add_subparsers(
        dest="action", required=True
    )
    command = add(vault, "rotate-key", cmd_vault_rotate_key, "re-encrypt every secret under a new master key")
    command.add_argument("--new-key-file", required=True, help="created (0600) if missing")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    code = 0
    try:
        args.handler(args)
    except (CommandError, MetadbUnavailable, MasterKeyError, CodecKeyError, credentials.CredentialNotFound) as exc:
        print(f"ob-takeover: {exc}", file=sys.stderr)
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit without interpreter teardown: the Temporal SDK can crash at exit in short-lived commands.
    os._exit(code)
