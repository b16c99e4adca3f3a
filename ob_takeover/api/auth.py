"""HTTP Basic authentication against the metadb's users, with OCP's roles and throttled failures."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from metadb import users
from metadb.db import Database
from ob_takeover.api.envelope import ApiError

log = logging.getLogger("ob_takeover.api")

CHALLENGE = {"WWW-Authenticate": 'Basic realm="ob-takeover", charset="UTF-8"'}
# This many failed logins from one address for one user name within the window are throttled.
MAX_FAILURES = 5
FAILURE_WINDOW_SECONDS = 60.0
# A verified name and password is trusted this long without a new scrypt check (while its hash is unchanged).
VERIFIED_SECONDS = 60.0
# At most this many scrypt checks at once (16 MiB each): a flood of logins cannot starve the service.
CONCURRENT_CHECKS = 2
# Failure counters kept at most; the oldest go first.
MAX_TRACKED = 10_000


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str


@dataclass
class Authenticator:
    """Checks Basic credentials; failures are counted per client address and user name."""

    db: Database
    _failures: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    # Keyed by an HMAC of name and password under a key of this process: no password is kept.
    _verified: dict[bytes, tuple[User, str, float]] = field(default_factory=dict)
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _checks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENT_CHECKS))

    async def user(self, authorization: str | None, client: str) -> User:
        """The user behind an `Authorization: Basic …` header; 401, 429 otherwise."""
        if not authorization or not authorization.lower().startswith("basic "):
            raise ApiError(401, "authentication required: HTTP Basic", headers=CHALLENGE)
        try:
            name, _, password = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "malformed Basic credentials", headers=CHALLENGE) from None
        key = (client, name[:64])
        self._throttle(key)
        token = hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        cached = self._verified.get(token)
        if cached and cached[2] > time.monotonic():
            # Still this user with this password hash: a deleted user or a new password ends it at once.
            row = await asyncio.to_thread(users.find_user, self.db, name)
            if row is not None and row["password_hash"] == cached[1]:
                return cached[0]
            self._verified.pop(token, None)
        # Counted before the check, so that guesses sent at once are throttled like guesses in a row.
        attempt = time.monotonic()
        self._failures.setdefault(key, deque()).append(attempt)
        async with self._checks:
            row = await asyncio.to_thread(users.authenticate, self.db, name, password)
        if row is None:
            log.warning("failed login for user %r from %s", name[:64], client)
            raise ApiError(401, "wrong user name or password", headers=CHALLENGE)
        recent = self._failures.get(key)
        if recent is not None:
            with contextlib.suppress(ValueError):
                recent.remove(attempt)
            if not recent:
                self._failures.pop(key, None)
        user = User(id=int(row["id"]), name=str(row["name"]), role=str(row["role"]))
        stored = await asyncio.to_thread(users.find_user, self.db, name)
        if stored is not None:
            self._verified[token] = (user, stored["password_hash"], time.monotonic() + VERIFIED_SECONDS)
        return user

    def _throttle(self, key: tuple[str, str]) -> None:
        while len(self._failures) > MAX_TRACKED:
            self._failures.pop(next(iter(self._failures)))
        recent = self._failures.get(key)
        if recent is None:
            return
        while recent and recent[0] < time.monotonic() - FAILURE_WINDOW_SECONDS:
            recent.popleft()
        if not recent:
            self._failures.pop(key, None)
        elif len(recent) >= MAX_FAILURES:
            retry = int(recent[0] + FAILURE_WINDOW_SECONDS - time.monotonic()) + 1
            raise ApiError(429, f"too many failed logins; try again in {retry} s", headers={"Retry-After": str(retry)})
        while len(self._failures) > MAX_TRACKED:
            self._failures.pop(next(iter(self._failures)))


def require(user: User, role: str) -> None:
    if not users.role_allows(user.role, role):
        raise ApiError(403, f"user {user.name} ({user.role}) may not do this: it needs {role}")
