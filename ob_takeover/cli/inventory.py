"""`ob-takeover host-type`, `cluster`, `host` and `lock`: what the metadb records about managed clusters
and hosts, and the locks takeovers hold on clusters."""

from __future__ import annotations

import argparse
import sys

from metadb import clusters, hosts, locks
from ob_takeover.cli.arguments import Subcommands, add_command, add_group
from ob_takeover.cli.console import CommandError, emit, say_where_if_empty, table
from ob_takeover.cli.deps import open_metadb

# --- host-type -------------------------------------------------------------------------------------


def add_host_type_parsers(commands: Subcommands) -> None:
    """`host-type add | list | delete`."""
    host_type = add_group(commands, "host-type", "host types")
    command = add_command(host_type, "add", cmd_host_type_add, "add a host type; prints hostTypeId")
    command.add_argument("--name", required=True)
    command.add_argument("--description")
    add_command(host_type, "list", cmd_host_type_list, "list host types")
    add_command(host_type, "delete", cmd_host_type_delete, "delete an unused host type").add_argument("id", type=int)


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


# --- cluster and host ------------------------------------------------------------------------------


def add_cluster_parsers(commands: Subcommands) -> None:
    """`cluster list`."""
    cluster = add_group(commands, "cluster", "managed clusters")
    add_command(cluster, "list", cmd_cluster_list, "list managed clusters")


def add_host_parsers(commands: Subcommands) -> None:
    """`host list | forget-key`."""
    host = add_group(commands, "host", "managed hosts")
    add_command(host, "list", cmd_host_list, "list hosts")
    command = add_command(
        host, "forget-key", cmd_host_forget_key, "forget a host's recorded SSH key (after a reinstall)"
    )
    command.add_argument("ip")


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


# --- lock ------------------------------------------------------------------------------------------


def add_lock_parsers(commands: Subcommands) -> None:
    """`lock list | release`."""
    lock = add_group(commands, "lock", "cluster locks")
    add_command(lock, "list", cmd_lock_list, "list cluster locks")
    command = add_command(lock, "release", cmd_lock_release, "force-release a stale lock")
    command.add_argument("key")
    command.add_argument("--yes", action="store_true", help="do not ask for confirmation")


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
