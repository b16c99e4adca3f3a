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
from collections import deque
from dataclasses import dataclass, field
from typing import TypeVar

from metadb import users
from metadb.db import Database
from ob_takeover.api.envelope import ApiError

log = logging.getLogger("ob_takeover.api")
Key = TypeVar("Key")

CHALLENGE = {"WWW-Authenticate": 'Basic realm="ob-takeover", charset="UTF-8"'}
# Failed logins within the window after which a user name is throttled: from one address, or from any.
MAX_FAILURES = 5
MAX_NAME_FAILURES = 20
FAILURE_WINDOW_SECONDS = 60.0
# A throttled name is checked one attempt at a time, and each failure then holds its turn this long
# (doubling per failure, at most the maximum): guesses slow down, the right password still gets in.
FIRST_PENALTY_SECONDS = 1.0
MAX_PENALTY_SECONDS = 30.0
# An address that logged in as a name keeps its own turn and skips the name-wide limit this long: guesses from
# elsewhere cannot hold the name's turn against it.
KNOWN_ADDRESS_SECONDS = 7 * 24 * 3600.0
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


def canonical_name(name: str) -> str:
    """The user name as throttling counts it: every spelling a case- and space-insensitive database could
    match (`ADMIN`, `aDmin  `) is one name."""
    return name.strip().casefold()[:64]


@dataclass
class Authenticator:
    """Checks Basic credentials against the metadb's users (names compared byte for byte).

    Parallel requests with the same credentials share one check, so a client's first burst is one login,
    never a run of failures. A failure counts once its check has failed, per client address and user name
    and per user name from any address; past the limits the name is checked one attempt at a time, a failure
    holding that turn for a growing penalty and answered 429 (as is an attempt that finds the turn taken).
    Failures slow guesses down; they do not lock the right password out. An address that has logged in as a
    name before counts only its own failures and takes a turn of its own, so that guesses from elsewhere
    cannot keep it out.
    """

    db: Database
    _failures: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    _name_failures: dict[str, deque[float]] = field(default_factory=dict)
    # Keyed by an HMAC of name and password under a key of this process: no password is kept.
    _verified: dict[bytes, tuple[User, str, float]] = field(default_factory=dict)
    _pending: dict[bytes, asyncio.Future[User]] = field(default_factory=dict)
    _turns: set[str | tuple[str, str]] = field(default_factory=set)
    # (address, canonical name) that logged in, and until when they are remembered.
    _known: dict[tuple[str, str], float] = field(default_factory=dict)
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
        token = hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        cached = self._verified.get(token)
        if cached and cached[2] > time.monotonic():
            # Still this user with this password hash: a deleted user or a new password ends it at once.
            row = await asyncio.to_thread(users.find_user, self.db, name)
            if row is not None and row["password_hash"] == cached[1]:
                return cached[0]
            self._verified.pop(token, None)
        pending = self._pending.get(token)
        if pending is not None:  # the same credentials are being checked: one check answers both
            return await asyncio.shield(pending)
        future: asyncio.Future[User] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            user = await self._login(name, password, client, token)
            future.set_result(user)
            return user
        except BaseException as exc:
            # The others waiting on this check get its answer; a cancelled request (a client gone, the
            # service stopping) tells them to try again rather than handing them its cancellation.
            shared = exc if isinstance(exc, Exception) else ApiError(503, "the login check was interrupted; try again")
            future.set_exception(shared)
            future.exception()  # retrieved here: a check nobody else waited for is not "never retrieved"
            raise
        finally:
            self._pending.pop(token, None)

    async def _login(self, name: str, password: str, client: str, token: bytes) -> User:
        canonical = canonical_name(name)
        key = (client, canonical)
        async with self._checks:
            throttled = self._throttled(key, canonical)
            if not throttled:
                return await self._check(name, password, client, token, key, canonical)
        # Past the limits: one attempt at a time for this name (a known address: for itself); an attempt that
        # finds the turn taken waits not.
        turn: str | tuple[str, str] = key if self._is_known(key) else canonical
        if turn in self._turns:
            raise _too_many(self._penalty(canonical))
        self._turns.add(turn)
        try:
            async with self._checks:
                return await self._check(name, password, client, token, key, canonical)
        except ApiError as exc:
            if exc.status != 401:
                raise
            penalty = self._penalty(canonical)
            await asyncio.sleep(penalty)  # the failure holds the turn: guesses go one at a time, slowly
            raise _too_many(penalty) from None
        finally:
            self._turns.discard(turn)

    async def _check(
        self, name: str, password: str, client: str, token: bytes, key: tuple[str, str], canonical: str
    ) -> User:
        row = await asyncio.to_thread(users.authenticate, self.db, name, password)
        if row is None:
            now = time.monotonic()
            self._failures.setdefault(key, deque()).append(now)
            self._name_failures.setdefault(canonical, deque()).append(now)
            self._forget_oldest()
            known = await asyncio.to_thread(users.find_user, self.db, name)
            # A name that is no user's is not logged: it may be a password typed into the wrong field.
            log.warning("failed login for %s from %s", f"user {name!r}" if known else "an unknown user name", client)
            raise ApiError(401, "wrong user name or password", headers=CHALLENGE)
        self._failures.pop(key, None)
        self._known[key] = time.monotonic() + KNOWN_ADDRESS_SECONDS
        self._forget_oldest()
        user = User(id=int(row["id"]), name=str(row["name"]), role=str(row["role"]))
        stored = await asyncio.to_thread(users.find_user, self.db, name)
        if stored is not None:
            self._verified[token] = (user, stored["password_hash"], time.monotonic() + VERIFIED_SECONDS)
        return user

    def _throttled(self, key: tuple[str, str], canonical: str) -> bool:
        if _recent(self._failures, key) >= MAX_FAILURES:
            return True
        return not self._is_known(key) and _recent(self._name_failures, canonical) >= MAX_NAME_FAILURES

    def _is_known(self, key: tuple[str, str]) -> bool:
        until = self._known.get(key)
        if until is not None and until < time.monotonic():
            self._known.pop(key, None)
            return False
        return until is not None

    def _penalty(self, canonical: str) -> float:
        excess = max(_recent(self._name_failures, canonical) - MAX_FAILURES, 0)
        return float(min(FIRST_PENALTY_SECONDS * 2 ** min(excess, 10), MAX_PENALTY_SECONDS))

    def _forget_oldest(self) -> None:
        while len(self._failures) > MAX_TRACKED:
            self._failures.pop(next(iter(self._failures)))
        while len(self._name_failures) > MAX_TRACKED:
            self._name_failures.pop(next(iter(self._name_failures)))
        while len(self._known) > MAX_TRACKED:
            self._known.pop(next(iter(self._known)))


def _recent(counters: dict[Key, deque[float]], key: Key) -> int:
    """Failures of `key` within the window (older ones are dropped)."""
    recent = counters.get(key)
    if recent is None:
        return 0
    while recent and recent[0] < time.monotonic() - FAILURE_WINDOW_SECONDS:
        recent.popleft()
    if not recent:
        counters.pop(key, None)
    return len(recent)


def _too_many(retry_after: float) -> ApiError:
    seconds = max(int(retry_after + 0.999), 1)
    return ApiError(429, f"too many failed logins; try again in {seconds} s", headers={"Retry-After": str(seconds)})


def require(user: User, role: str) -> None:
    if not users.role_allows(user.role, role):
        raise ApiError(403, f"user {user.name} ({user.role}) may not do this: it needs {role}")
