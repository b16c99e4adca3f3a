"""The login throttle in process (the REST tests drive it over HTTP from one address): addresses, turns and
the checks that parallel requests share."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from metadb import users
from metadb.db import Database
from metadb.migrate import migrate
from ob_takeover.api import auth
from ob_takeover.api.auth import Authenticator
from ob_takeover.api.envelope import ApiError

pytestmark = pytest.mark.unit


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


@pytest.fixture
def authenticator(tmp_path: Path) -> Authenticator:
    db = Database(f"sqlite:///{tmp_path / 'metadb.sqlite'}")
    migrate(db)
    users.add_user(db, "admin", users.ADMIN, "Admin-pw-123")
    return Authenticator(db)


async def status_of(authenticator: Authenticator, password: str, client: str) -> int:
    try:
        await authenticator.user(basic("admin", password), client)
        return 200
    except ApiError as exc:
        return exc.status


async def test_guesses_from_elsewhere_cannot_keep_a_known_address_out(authenticator: Authenticator) -> None:
    assert await status_of(authenticator, "Admin-pw-123", "10.0.0.1") == 200  # the admin's own address
    authenticator._verified.clear()  # a later login, after the cache has expired
    for attacker in range(4):  # 20 failures of the name from four addresses: the name is throttled
        for guess in range(5):
            assert await status_of(authenticator, f"guess-{guess}", f"192.0.2.{attacker}") == 401
    # An attacker holds the name's turn with a slow failure...
    holding = asyncio.ensure_future(status_of(authenticator, "guess-x", "192.0.2.9"))
    await asyncio.sleep(0.5)
    assert not holding.done()
    try:
        # ...a new address with the right password waits its turn (429), the known address logs in at once.
        assert await status_of(authenticator, "Admin-pw-123", "198.51.100.7") == 429
        assert await status_of(authenticator, "Admin-pw-123", "10.0.0.1") == 200
        # The attacker's own further guesses find the turn taken.
        assert await status_of(authenticator, "guess-y", "192.0.2.10") == 429
    finally:
        holding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holding
    assert not authenticator._turns  # a cancelled attempt leaves its turn behind


async def test_a_cancelled_check_tells_the_requests_sharing_it_to_try_again(
    authenticator: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = asyncio.Event()

    async def blocked_login(*args: object) -> auth.User:
        await slow.wait()
        raise AssertionError("not reached")

    monkeypatch.setattr(authenticator, "_login", blocked_login)
    first = asyncio.ensure_future(authenticator.user(basic("admin", "Admin-pw-123"), "10.0.0.1"))
    await asyncio.sleep(0.1)
    second = asyncio.ensure_future(authenticator.user(basic("admin", "Admin-pw-123"), "10.0.0.2"))
    await asyncio.sleep(0.1)
    first.cancel()
    with pytest.raises(ApiError) as info:
        await second
    assert info.value.status == 503 and "try again" in info.value.message
    assert not authenticator._pending
