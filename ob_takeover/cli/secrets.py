"""`ob-takeover user`, `credential` and `vault`: the REST API's users, the password box and its master key."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from contracts.settings import Settings, load_settings
from metadb import credentials, users
from metadb.vault import (
    KEY_CHECK_INTERVAL,
    count_ciphertexts_by_key,
    load_keys,
    load_master_key,
    previous_key_file,
    rotate_master_key,
)
from ob_takeover.cli.arguments import Subcommands, add_command, add_group, endpoint_argument, hosts_argument
from ob_takeover.cli.console import CommandError, emit, read_secret, table
from ob_takeover.cli.deps import open_metadb, open_vault

# --- user ------------------------------------------------------------------------------------------


def add_user_parsers(commands: Subcommands) -> None:
    """`user add | list | delete | passwd`."""
    user = add_group(commands, "user", "REST API users")
    command = add_command(user, "add", cmd_user_add, "add an API user; prints userId")
    command.add_argument("--name", required=True)
    command.add_argument("--role", required=True, choices=users.ROLES)
    command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add_command(user, "list", cmd_user_list, "list API users (never their password hashes)")
    add_command(user, "delete", cmd_user_delete, "delete an API user").add_argument("name")
    command = add_command(user, "passwd", cmd_user_passwd, "set an API user's password")
    command.add_argument("name")
    command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")


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


# --- credential ------------------------------------------------------------------------------------


def add_credential_parsers(commands: Subcommands) -> None:
    """`credential add-host | add-cluster | bind | list | delete`."""
    credential = add_group(commands, "credential", "the password box")
    command = add_command(credential, "add-host", cmd_credential_add_host, "add an SSH credential; prints credentialId")
    command.add_argument("--username", required=True)
    secret = command.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    secret.add_argument("--private-key-file")
    command.add_argument("--passphrase-stdin", action="store_true", help="read the key's passphrase from stdin")
    command.add_argument("--name")
    hosts_argument(command, help="the only hosts it may log in to (required with host_key_policy tofu)")
    command = add_command(
        credential, "add-cluster", cmd_credential_add_cluster, "add root@sys of a cluster; prints credentialId"
    )
    endpoint_argument(command, required=True, help="where the cluster's sys tenant answers; the only place it is used")
    command.add_argument("--name", help="a name for it (default: the first endpoint)")
    command.add_argument("--username", default="root@sys")
    command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    command = add_command(credential, "bind", cmd_credential_bind, "set where a credential may be used")
    command.add_argument("id", type=int)
    endpoint_argument(command, help="a cluster credential's endpoints (replaces them)")
    hosts_argument(command, help="a host credential's hosts (replaces them)")
    command = add_command(credential, "list", cmd_credential_list, "list credentials (never their secrets)")
    command.add_argument("--kind", choices=[credentials.HOST, credentials.CLUSTER, credentials.PLATFORM])
    add_command(credential, "delete", cmd_credential_delete, "delete an unused credential").add_argument("id", type=int)


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


# --- vault -----------------------------------------------------------------------------------------


def add_vault_parsers(commands: Subcommands) -> None:
    """`vault rotate-key | status`."""
    vault = add_group(commands, "vault", "the password box's master key")
    command = add_command(vault, "rotate-key", cmd_vault_rotate_key, "re-encrypt every secret under a new master key")
    command.add_argument("--new-key-file", required=True, help="created (0600) if missing")
    add_command(vault, "status", cmd_vault_status, "how many secrets each master key seals; whether the old key may go")


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
        # Running workers and services read the key file again before they encrypt (KEY_CHECK_INTERVAL).
        current = Path(settings.master_key_file)
        install_key_file(current, previous_key_file(current), path)
        print(
            f"re-encrypted {count} secret(s); {current} now holds the new key and {previous_key_file(current)} "
            f"the old one; running workers switch to the new key within {KEY_CHECK_INTERVAL:g} seconds, after "
            "which `ob-takeover vault status` says whether the old one may be deleted",
            file=sys.stderr,
        )
    emit({"reencrypted": count, "keyId": new_key.key_id})


def cmd_vault_status(args: argparse.Namespace) -> None:
    """Per key id, how many of the metadb's ciphertexts it seals: after a rotation, the old key may be deleted
    once it seals none (a process that kept encrypting under it would otherwise leave secrets nobody reads).
    Names keys by their id only, never their material."""
    db = open_metadb(args)
    settings = args.settings
    keys = load_keys(settings, create=False)
    active = keys[0].key_id
    recorded = [row["key_id"] for row in db.query("SELECT key_id FROM vault_keys WHERE active = 1")]
    if recorded and active not in recorded:
        raise CommandError(
            f"the configured master key ({active}) is not the metadb's active key ({', '.join(recorded)}); "
            "set OB_TAKEOVER_MASTER_KEY or OB_TAKEOVER_MASTER_KEY_FILE to that key"
        )
    counts = count_ciphertexts_by_key(db)
    where = {keys[0].key_id: "active", **{key.key_id: "kept for reading" for key in keys[1:]}}
    usage = {key_id: counts.get(key_id, 0) for key_id in [*where, *sorted(counts)]}
    rows = [
        {"key_id": key_id, "ciphertexts": n, "key": where.get(key_id, "unknown: no configured key")}
        for key_id, n in usage.items()
    ]
    table(rows, ["key_id", "ciphertexts", "key"])
    left = sum(n for key_id, n in usage.items() if key_id != active)
    unknown = sum(n for key_id, n in usage.items() if key_id not in where)
    under_old = left - unknown
    if unknown:
        print(
            f"{unknown} ciphertext(s) are under a key not configured here: nothing here can read them", file=sys.stderr
        )
    if under_old:
        print(
            f"{under_old} ciphertext(s) are under an old key: keep it; `ob-takeover vault rotate-key` re-encrypts "
            "them under a new one",
            file=sys.stderr,
        )
    elif not left and len(keys) > 1:
        sources = " and ".join(_old_key_sources(settings))
        print(f"every ciphertext is under the active key: {sources} may be removed", file=sys.stderr)
    emit({"active": active, "keys": usage, "previousKeyNeeded": left > 0})


def _old_key_sources(settings: Settings) -> list[str]:
    """Where the keys kept for reading come from, as `load_keys` reads them."""
    sources = []
    previous = previous_key_file(Path(settings.master_key_file))
    if not settings.master_key and previous.exists():
        sources.append(f"the file {previous}")
    if settings.master_key_previous:
        sources.append("OB_TAKEOVER_MASTER_KEY_PREVIOUS")
    return sources


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
