"""A scratch metadb for the plan preview: what a takeover's subtasks read from the metadb, without secrets.

The preview runs the subtasks' real code, which reads and writes the metadb. It gets a throw-away copy
of the rows those subtasks read (host types, the cluster's hosts and their credentials), with every
secret replaced by a placeholder, so that nothing the preview does can reach the real metadb and no
real secret is ever decrypted for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from metadb.db import Database
from metadb.vault import Vault, credential_context

PLACEHOLDER_SECRET = "preview-placeholder"


def copy_for_preview(
    source: Database,
    target: Database,
    target_vault: Vault,
    *,
    host_ips: Iterable[str],
    credential_ids: Iterable[int],
) -> None:
    """Copy host types, the hosts at `host_ips` and the credentials they (or `credential_ids`) name."""
    for host_type in source.query("SELECT * FROM host_types"):
        target.insert_ignore("host_types", host_type)
    wanted = set(credential_ids)
    for ip in host_ips:
        found = source.one("SELECT * FROM hosts WHERE ip = ?", (ip,))
        if found is not None:
            target.insert_ignore("hosts", found)
            wanted.add(int(found["credential_id"]))
    for credential_id in sorted(wanted):
        row = source.one(
            "SELECT id, kind, name, username, cluster_id, created_by_task_id, created_at, updated_at "
            "FROM credentials WHERE id = ?",
            (credential_id,),
        )
        if row is None:
            continue
        context = credential_context(row["kind"], row["name"])
        target.insert_ignore(
            "credentials",
            {**row, "secret_type": "password", "secret": target_vault.encrypt(PLACEHOLDER_SECRET, context)},
        )
