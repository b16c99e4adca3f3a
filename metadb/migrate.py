"""Versioned migrations: ordered SQL files, each applied once and recorded in `schema_version`.

Two processes starting together do not both migrate: the runner holds an advisory lock (a write
transaction on SQLite, GET_LOCK on MySQL) while it compares and applies versions.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from metadb.db import Database

log = logging.getLogger("ob_takeover.metadb")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_DIALECT = {
    "sqlite": {"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "json": "TEXT", "options": ""},
    "mysql": {
        "pk": "BIGINT PRIMARY KEY AUTO_INCREMENT",
        "json": "MEDIUMTEXT",
        "options": "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    },
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self, dialect: str) -> list[str]:
        text = self.path.read_text()
        for placeholder, value in _DIALECT[dialect].items():
            text = text.replace("{{" + placeholder + "}}", value)
        text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
        return [statement.strip() for statement in text.split(";") if statement.strip()]


def migrations(directory: Path = MIGRATIONS) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a version number")
    return found


def applied_versions(db: Database) -> set[int]:
    return {int(row["version"]) for row in db.query("SELECT version FROM schema_version")}


def migrate(db: Database, directory: Path = MIGRATIONS) -> list[int]:
    """Apply every pending migration; returns the versions this call applied."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at VARCHAR(40) NOT NULL)"
    )
    applied: list[int] = []
    with db.advisory_lock("ob_takeover_migrate"):
        done = applied_versions(db)
        for migration in migrations(directory):
            if migration.version in done:
                continue
            for statement in migration.statements(db.dialect):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, datetime.now(UTC).isoformat(timespec="seconds")),
            )
            applied.append(migration.version)
            log.info("metadb %s: applied migration %04d_%s", db.url, migration.version, migration.name)
    return applied
