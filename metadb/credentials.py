"""Credentials in the password box: host SSH logins and cluster users."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contracts.errors import CredentialNotFound
from metadb.db import Database
from metadb.vault import Vault, credential_context

HOST = "HOST"
CLUSTER = "CLUSTER"
PLATFORM = "PLATFORM"
PROXYRO_NAME = "proxyro"


@dataclass(frozen=True)
class Credential:
    """A decrypted credential, for the code that logs in with it; its repr hides the secrets."""

    id: int
    kind: str
    name: str
    username: str
    secret_type: str  # "password" or "private_key"
    secret: str = field(repr=False)
    passphrase: str | None = field(default=None, repr=False)
    # Where it may be used (see `activities.credentials`): a cluster credential's endpoints and cluster,
    # a host credential's hosts; the managed cluster it belongs to; the task that stored it.
    endpoints: tuple[str, ...] = ()
    bound_cluster: str | None = None
    hosts: tuple[str, ...] = ()
    cluster_id: int | None = None
    created_by_task_id: int | None = None
    user_existed: bool = False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def generate_password(length: int = 24) -> str:
    """A password OceanBase accepts: letters, digits and a few punctuation marks, at least one of each."""
    alphabet = string.ascii_letters + string.digits + "_-.+"
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
            and any(c in "_-.+" for c in password)
        ):
            return password


def save_credential(
    db: Database,
    vault: Vault,
    *,
    kind: str,
    name: str,
    username: str,
    secret: str,
    secret_type: str = "password",
    passphrase: str | None = None,
    cluster_id: int | None = None,
    created_by_task_id: int | None = None,
    endpoints: Sequence[str] = (),
    bound_cluster: str | None = None,
    hosts: Sequence[str] = (),
    user_existed: bool | None = None,
) -> int:
    """Store (or replace) the credential `kind`/`name`; returns its id.

    `created_by_task_id` marks the row as the task's own: that task's rollback may delete it, no other
    may. `endpoints` and `bound_cluster` bind a cluster credential, `hosts` a host credential, to where it
    may be used. `user_existed` says whether the cluster user was there before the task.
    """
    context = credential_context(kind, name)
    now = _now()
    with db.transaction():
        db.upsert(
            "credentials",
            {"kind": kind, "name": name},
            {
                "username": username,
                "secret_type": secret_type,
                "secret": vault.encrypt(secret, context),
                "passphrase": vault.encrypt(passphrase, context + ":passphrase") if passphrase else None,
                "cluster_id": cluster_id,
                "created_by_task_id": created_by_task_id,
                "endpoints": json.dumps(list(endpoints)) if endpoints else None,
                "bound_cluster": bound_cluster,
                "hosts": json.dumps(list(hosts)) if hosts else None,
                "user_existed": None if user_existed is None else int(user_existed),
                "created_at": now,
                "updated_at": now,
            },
        )
        row = db.one("SELECT id FROM credentials WHERE kind = ? AND name = ?", (kind, name))
    assert row is not None
    return int(row["id"])


def _decrypt(vault: Vault, row: dict[str, Any]) -> Credential:
    context = credential_context(row["kind"], row["name"])
    return Credential(
        id=int(row["id"]),
        kind=row["kind"],
        name=row["name"],
        username=row["username"],
        secret_type=row["secret_type"],
        secret=vault.decrypt(row["secret"], context),
        passphrase=vault.decrypt(row["passphrase"], context + ":passphrase") if row["passphrase"] else None,
        endpoints=tuple(json.loads(row["endpoints"])) if row.get("endpoints") else (),
        bound_cluster=row.get("bound_cluster"),
        hosts=tuple(json.loads(row["hosts"])) if row.get("hosts") else (),
        cluster_id=int(row["cluster_id"]) if row.get("cluster_id") is not None else None,
        created_by_task_id=int(row["created_by_task_id"]) if row.get("created_by_task_id") is not None else None,
        user_existed=bool(row.get("user_existed")),
    )


def get_credential(db: Database, vault: Vault, credential_id: int) -> Credential:
    row = db.one("SELECT * FROM credentials WHERE id = ?", (credential_id,))
    if row is None:
        raise CredentialNotFound(f"credential {credential_id} does not exist in the password box")
    return _decrypt(vault, row)


def find_credential(db: Database, vault: Vault, kind: str, name: str) -> Credential | None:
    row = db.one("SELECT * FROM credentials WHERE kind = ? AND name = ?", (kind, name))
    return _decrypt(vault, row) if row else None


_PUBLIC_COLUMNS = (
    "id, kind, name, username, secret_type, cluster_id, created_by_task_id, endpoints, bound_cluster, hosts, "
    "user_existed, created_at"
)


def describe_credential(
    db: Database, *, credential_id: int | None = None, kind: str | None = None, name: str | None = None
) -> dict[str, Any] | None:
    """A credential's row without its secrets, by id or by kind and name; None when there is none."""
    if credential_id is not None:
        return db.one(f"SELECT {_PUBLIC_COLUMNS} FROM credentials WHERE id = ?", (credential_id,))
    return db.one(f"SELECT {_PUBLIC_COLUMNS} FROM credentials WHERE kind = ? AND name = ?", (kind, name))


def list_credentials(db: Database, kind: str | None = None) -> list[dict[str, Any]]:
    """Credentials without their secrets."""
    sql = (
        "SELECT id, kind, name, username, secret_type, cluster_id, endpoints, bound_cluster, hosts, created_at "
        "FROM credentials"
    )
    if kind:
        return db.query(sql + " WHERE kind = ? ORDER BY id", (kind,))
    return db.query(sql + " ORDER BY id")


def delete_credential(db: Database, credential_id: int) -> bool:
    """Delete a credential unless a host still uses it; returns whether a row was deleted."""
    used = db.one("SELECT ip FROM hosts WHERE credential_id = ?", (credential_id,))
    if used:
        raise ValueError(f"credential {credential_id} is used by host {used['ip']}")
    with db.transaction():
        found = db.one("SELECT id FROM credentials WHERE id = ?", (credential_id,))
        db.execute("DELETE FROM credentials WHERE id = ?", (credential_id,))
    return found is not None


def delete_own_cluster_credential(db: Database, name: str, task_id: int) -> bool:
    """Delete the cluster credential `name` if task `task_id` stored it; returns whether it did. Another
    task's credential (an earlier takeover of the same cluster) is never touched."""
    removed = db.delete(
        "DELETE FROM credentials WHERE kind = ? AND name = ? AND created_by_task_id = ?", (CLUSTER, name, task_id)
    )
    return removed > 0


def cluster_credential_name(cluster_key: str, user: str) -> str:
    """The name a cluster's own credential for `user` is stored under: `name:obClusterId:user`."""
    return f"{cluster_key}:{user}"


def disown_cluster_credential(db: Database, name: str, task_id: int) -> int | None:
    """Keep the cluster credential `name` that task `task_id` stored, as nobody's (no rollback or release
    deletes it) and no longer tied to a cluster record; returns its id, or None if the task has none."""
    row = db.one(
        "SELECT id FROM credentials WHERE kind = ? AND name = ? AND created_by_task_id = ?", (CLUSTER, name, task_id)
    )
    if row is None:
        return None
    db.execute(
        "UPDATE credentials SET created_by_task_id = NULL, cluster_id = NULL, updated_at = ? WHERE id = ?",
        (_now(), row["id"]),
    )
    return int(row["id"])


def delete_task_credentials(db: Database, task_id: int, *, keep_prefix: str) -> int:
    """Delete the cluster credentials task `task_id` stored for its own time (names not starting with
    `keep_prefix`, the cluster's own); returns how many."""
    with db.transaction():
        rows = db.query(
            "SELECT id, name FROM credentials WHERE kind = ? AND created_by_task_id = ?", (CLUSTER, task_id)
        )
        doomed = [int(row["id"]) for row in rows if not str(row["name"]).startswith(keep_prefix)]
        for credential_id in doomed:
            db.execute("DELETE FROM credentials WHERE id = ?", (credential_id,))
    return len(doomed)


def bind_to_cluster(db: Database, credential_id: int, cluster_key: str) -> str:
    """Bind a credential to the cluster `name:obClusterId` unless it is bound already (a conditional write:
    two first uses racing cannot both win); returns the cluster it is bound to."""
    db.execute(
        "UPDATE credentials SET bound_cluster = ?, updated_at = ? WHERE id = ? AND bound_cluster IS NULL",
        (cluster_key, _now(), credential_id),
    )
    row = db.one("SELECT bound_cluster FROM credentials WHERE id = ?", (credential_id,))
    if row is None:
        raise CredentialNotFound(f"credential {credential_id} does not exist in the password box")
    return str(row["bound_cluster"])


def set_scope(
    db: Database, credential_id: int, *, endpoints: Sequence[str] | None = None, hosts: Sequence[str] | None = None
) -> None:
    """Replace where a credential may be used (its endpoints or its hosts); the operator's command."""
    values: dict[str, str | None] = {}
    if endpoints is not None:
        values["endpoints"] = json.dumps(list(endpoints)) if endpoints else None
    if hosts is not None:
        values["hosts"] = json.dumps(list(hosts)) if hosts else None
    if not values:
        return
    if db.one("SELECT id FROM credentials WHERE id = ?", (credential_id,)) is None:
        raise CredentialNotFound(f"credential {credential_id} does not exist in the password box")
    assignments = ", ".join(f"{column} = ?" for column in values)
    db.execute(
        f"UPDATE credentials SET {assignments}, updated_at = ? WHERE id = ?", (*values.values(), _now(), credential_id)
    )
