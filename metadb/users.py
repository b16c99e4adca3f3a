"""Users of the REST API, with OCP's roles; passwords kept as slow scrypt hashes, never reversible."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

from contracts.errors import UserExists, UserNotFound
from metadb.db import Database

ADMIN = "ADMIN"
TASK_MANAGER = "TASK_MANAGER"
TASK_VIEWER = "TASK_VIEWER"
# Each role may do what the roles after it may do.
ROLES = (ADMIN, TASK_MANAGER, TASK_VIEWER)

# scrypt with N=2^14, r=8, p=1: about 16 MiB and tens of milliseconds per check.
_N, _R, _P = 1 << 14, 8, 1
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-@")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    encode = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${encode(salt).decode()}${encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


def role_allows(role: str, needed: str) -> bool:
    """Whether `role` may do what `needed` may (ADMIN > TASK_MANAGER > TASK_VIEWER)."""
    return role in ROLES and needed in ROLES and ROLES.index(role) <= ROLES.index(needed)


def _check(name: str, role: str, password: str) -> None:
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise ValueError("user name: 1-64 letters, digits and _ . - @")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise ValueError("password: at least 8 characters")


def add_user(db: Database, name: str, role: str, password: str) -> int:
    _check(name, role, password)
    now = _now()
    with db.transaction():
        if db.one("SELECT id FROM users WHERE name = ?", (name,)):
            raise UserExists(f"user {name} exists")
        return db.execute(
            "INSERT INTO users (name, role, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (name, role, hash_password(password), now, now),
        )


def list_users(db: Database) -> list[dict[str, Any]]:
    """Users without their password hashes."""
    return db.query("SELECT id, name, role, created_at, updated_at FROM users ORDER BY id")


def find_user(db: Database, name: str) -> dict[str, Any] | None:
    """The user named exactly `name`: byte for byte, whatever the database's collation (a MySQL metadb's
    default one matches `ADMIN` and `admin  ` to `admin`)."""
    row = db.one("SELECT * FROM users WHERE name = ?", (name,))
    return row if row is not None and row["name"] == name else None


def delete_user(db: Database, name: str) -> None:
    if find_user(db, name) is None:
        raise UserNotFound(f"user {name} does not exist")
    db.execute("DELETE FROM users WHERE name = ?", (name,))


def set_password(db: Database, name: str, password: str) -> None:
    user = find_user(db, name)
    if user is None:
        raise UserNotFound(f"user {name} does not exist")
    _check(name, user["role"], password)
    db.execute(
        "UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?", (hash_password(password), _now(), name)
    )


def authenticate(db: Database, name: str, password: str) -> dict[str, Any] | None:
    """The user's row without its hash when the password is right, else None (same work either way)."""
    user = find_user(db, name)
    stored = user["password_hash"] if user else _DUMMY_HASH
    ok = check_password(password, stored)
    if user is None or not ok:
        return None
    return {k: v for k, v in user.items() if k != "password_hash"}


# Checked against for an unknown user, so that a missing user takes as long as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_hex(16))
