"""HTTP Basic authentication against the metadb's users, with OCP's roles and throttled failures."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from metadb import users
from metadb.db import Database
from ob_takeover.api.envelope import ApiError

log = logging.getLogger("ob_takeover.api")

CHALLENGE = {"WWW-Authenticate": 'Basic realm="ob-takeover", charset="UTF-8"'}
# This many failed logins from one address for one user name within the window are throttled.
MAX_FAILURES = 5
FAILURE_WINDOW_SECONDS = 60.0
# A verified name and password is trusted this long without a new scrypt check.
VERIFIED_SECONDS = 60.0


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str


@dataclass
class Authenticator:
    """Checks Basic credentials; failures are counted per client address and user name."""

    db: Database
    _failures: dict[tuple[str, str], deque[float]] = field(default_factory=lambda: defaultdict(deque))
    # Keyed by an HMAC of name and password under a key of this process: no password is kept.
    _verified: dict[bytes, tuple[User, float]] = field(default_factory=dict)
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    async def user(self, authorization: str | None, client: str) -> User:
        """The user behind an `Authorization: Basic …` header; 401, 429 otherwise."""
        if not authorization or not authorization.lower().startswith("basic "):
            raise ApiError(401, "authentication required: HTTP Basic", headers=CHALLENGE)
        try:
            name, _, password = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "malformed Basic credentials", headers=CHALLENGE) from None
        key = (client, name)
        recent = self._recent_failures(key)
        if len(recent) >= MAX_FAILURES:
            retry = int(recent[0] + FAILURE_WINDOW_SECONDS - time.monotonic()) + 1
            raise ApiError(429, f"too many failed logins; try again in {retry} s", headers={"Retry-After": str(retry)})
        token = hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        cached = self._verified.get(token)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        row: dict[str, Any] | None = await asyncio.to_thread(users.authenticate, self.db, name, password)
        if row is None:
            recent.append(time.monotonic())
            log.warning("failed login for user %r from %s", name, client)
            raise ApiError(401, "wrong user name or password", headers=CHALLENGE)
        user = User(id=int(row["id"]), name=str(row["name"]), role=str(row["role"]))
        self._verified[token] = (user, time.monotonic() + VERIFIED_SECONDS)
        return user

    def _recent_failures(self, key: tuple[str, str]) -> deque[float]:
        recent = self._failures[key]
        while recent and recent[0] < time.monotonic() - FAILURE_WINDOW_SECONDS:
            recent.popleft()
        return recent

    def forget(self) -> None:
        """Drop verified logins, so that a deleted user or a new password takes effect at once."""
        self._verified.clear()


def require(user: User, role: str) -> None:
    if not users.role_allows(user.role, role):
        raise ApiError(403, f"user {user.name} ({user.role}) may not do this: it needs {role}")
