"""The password box: credentials encrypted at rest with AES-GCM under a master key.

The master key comes from `OB_TAKEOVER_MASTER_KEY` (base64 of 32 bytes) or from a key file
(`OB_TAKEOVER_MASTER_KEY_FILE`, default `var/master.key`) created with mode 0600 on first start. The
metadb keeps a fingerprint of the key, so a wrong key is a clear error at start, never garbage. A running
process looks at the key file again before it encrypts (at most every `KEY_CHECK_INTERVAL` seconds), so
after a key rotation it seals new secrets under the new key, never under the one being retired.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contracts.errors import MasterKeyError, TakeoverError
from contracts.settings import Settings
from metadb.db import Database

MASTER_KEY_ENV = "OB_TAKEOVER_MASTER_KEY"
MASTER_KEY_FILE_ENV = "OB_TAKEOVER_MASTER_KEY_FILE"
_CHECK_MESSAGE = b"ob-takeover password box key check"
# Seconds a vault that follows the key file encrypts under the key it last read before reading it again:
# a rotation reaches every running process this long after the key file changed.
KEY_CHECK_INTERVAL = 5.0
# The credentials' columns that hold ciphertexts, with the suffix of the context each is sealed under.
# `rotate_master_key` re-encrypts all of them and `count_ciphertexts_by_key` counts them.
SEALED_CREDENTIAL_COLUMNS: dict[str, str] = {"secret": "", "passphrase": ":passphrase"}


@dataclass(frozen=True)
class MasterKey:
    key: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"key-id" + self.key).hexdigest()[:16]

    @property
    def check_value(self) -> str:
        return hmac.new(self.key, _CHECK_MESSAGE, hashlib.sha256).hexdigest()

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(32))

    @classmethod
    def decode(cls, text: str, source: str) -> MasterKey:
        return cls(decode_key(text, source, MasterKeyError))

    def encoded(self) -> str:
        return base64.b64encode(self.key).decode()


def decode_key(text: str, source: str, error: type[TakeoverError]) -> bytes:
    """A 256-bit AES key from its base64 text; `error` (naming `source`, never the text) when it is not one."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise error(f"{source} is not base64") from None
    if len(key) != 32:
        raise error(f"{source} must hold 32 bytes (base64), found {len(key)}")
    return key


def create_key_file(path: Path, text: str) -> bool:
    """Write a new key file (0600) whole, at once: False when one exists already. Processes starting
    together never see a half-written file, and all of them end up with the same key."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    with os.fdopen(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(text)
    try:
        os.link(staged, path)
        return True
    except FileExistsError:
        return False
    finally:
        staged.unlink()


def load_master_key(settings: Settings, *, create: bool = True) -> MasterKey:
    """The master key from the settings or its key file (created 0600 when missing and allowed)."""
    if settings.master_key:
        return MasterKey.decode(settings.master_key, MASTER_KEY_ENV)
    path = Path(settings.master_key_file)
    if not path.exists():
        if not create:
            raise MasterKeyError(f"no master key: set {MASTER_KEY_ENV} or create {path}")
        key = MasterKey.generate()
        if create_key_file(path, key.encoded() + "\n"):
            return key
        # Another process (the worker, the service) made it a moment ago: that one is the key.
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise MasterKeyError(f"master key file {path} has mode {mode:o}; make it 0600")
    return MasterKey.decode(path.read_text(), f"master key file {path}")


def previous_key_file(path: Path) -> Path:
    """Where a key rotation keeps the key it replaced, for reading."""
    return path.with_name(path.name + ".previous")


def load_keys(settings: Settings, *, create: bool = True) -> list[MasterKey]:
    """The master key, then the keys kept for reading: the key file's `.previous` one (left by a key
    rotation) and `master_key_previous`."""
    keys = [load_master_key(settings, create=create)]
    if not settings.master_key:
        previous = previous_key_file(Path(settings.master_key_file))
        if previous.exists():
            keys.append(MasterKey.decode(previous.read_text(), f"master key file {previous}"))
    for text in (settings.master_key_previous or "").split(","):
        if text.strip():
            keys.append(MasterKey.decode(text, "OB_TAKEOVER_MASTER_KEY_PREVIOUS"))
    return keys


def load_vault(settings: Settings) -> Vault:
    """The password box of a process: its keys from the settings, read again before encrypting (at most every
    `KEY_CHECK_INTERVAL` seconds) and when a secret turns up under a key it does not know, so running
    workers and services follow a key rotation."""
    keys = load_keys(settings)
    return Vault(keys[0], keys[1:], reload=lambda: load_keys(settings, create=False))


class Vault:
    """Encrypts and decrypts secrets; `context` binds a ciphertext to the row it belongs to.

    With `reload` (the key source of `load_vault`), the vault follows the key source: the first key it returns
    encrypts from then on and every key it ever returned stays for reading. Without it the keys are fixed.
    Safe to share between threads.
    """

    def __init__(
        self,
        key: MasterKey,
        previous: list[MasterKey] | None = None,
        reload: Callable[[], list[MasterKey]] | None = None,
    ) -> None:
        self.key = key
        self._keys = {k.key_id: k for k in [key, *(previous or [])]}
        self._reload = reload
        self._lock = threading.Lock()
        self._checked_at = time.monotonic()

    def encrypt(self, plaintext: str, context: str) -> str:
        key = self._active_key()
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(key.key).encrypt(nonce, plaintext.encode(), context.encode())
        return f"v1:{key.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, context: str) -> str:
        try:
            version, key_id, payload = token.split(":", 2)
        except ValueError:
            raise MasterKeyError("stored secret is not in the password box format") from None
        key = self._keys.get(key_id)
        if key is None and self._reload is not None:
            with self._lock:
                if key_id not in self._keys:  # another thread may have read the key source meanwhile
                    self._read_keys(self._reload)
            key = self._keys.get(key_id)
        if version != "v1" or key is None:
            raise MasterKeyError(
                f"secret was encrypted with master key {key_id}; the configured key is {self.key.key_id}"
            )
        raw = base64.b64decode(payload)
        try:
            return AESGCM(key.key).decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag:
            raise MasterKeyError(f"secret for {context} does not decrypt: it was altered or moved") from None

    def _active_key(self) -> MasterKey:
        """The key to encrypt under: the key source's current one, read again once `KEY_CHECK_INTERVAL` has
        passed since the last look (by one thread; the others wait for it rather than use a retired key)."""
        if self._reload is None or time.monotonic() - self._checked_at < KEY_CHECK_INTERVAL:
            return self.key
        with self._lock:
            if time.monotonic() - self._checked_at >= KEY_CHECK_INTERVAL:  # no other thread just looked
                self._read_keys(self._reload)
            return self.key

    def _read_keys(self, reload: Callable[[], list[MasterKey]]) -> None:
        """Take the key source's keys: its first one is the active key; the keys known before stay for reading
        secrets not re-encrypted yet. The caller holds the lock."""
        keys = reload()
        # A new dict, swapped in whole: `decrypt` reads it without the lock.
        self._keys = {**self._keys, **{k.key_id: k for k in keys}}
        self.key = keys[0]
        self._checked_at = time.monotonic()

    def verify(self, db: Database) -> None:
        """Check the key against the metadb's fingerprints; the first key to start is recorded."""
        rows = db.query("SELECT key_id, check_value, active FROM vault_keys")
        if not rows:
            db.upsert(
                "vault_keys",
                {"key_id": self.key.key_id},
                {"check_value": self.key.check_value, "active": 1, "created_at": _now()},
            )
            return
        active = [row for row in rows if int(row["active"]) == 1]
        if not any(row["key_id"] == self.key.key_id and row["check_value"] == self.key.check_value for row in active):
            known = ", ".join(row["key_id"] for row in active)
            raise MasterKeyError(
                f"the master key ({self.key.key_id}) is not the one that encrypted the metadb's secrets "
                f"({known}); set {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV} to that key"
            )


def rotate_master_key(db: Database, old: Vault, new_key: MasterKey) -> int:
    """Re-encrypt every secret under `new_key` in one transaction; returns how many credentials were
    re-encrypted."""
    old.verify(db)
    new = Vault(new_key)
    columns = list(SEALED_CREDENTIAL_COLUMNS)
    count = 0
    with db.transaction():
        for row in db.query(f"SELECT id, kind, name, {', '.join(columns)} FROM credentials"):
            context = credential_context(row["kind"], row["name"])
            sealed = [
                row[column] and new.encrypt(old.decrypt(row[column], context + suffix), context + suffix)
                for column, suffix in SEALED_CREDENTIAL_COLUMNS.items()
            ]
            db.execute(
                f"UPDATE credentials SET {', '.join(f'{column} = ?' for column in columns)} WHERE id = ?",
                (*sealed, row["id"]),
            )
            count += 1
        db.execute("UPDATE vault_keys SET active = 0")
        db.upsert(
            "vault_keys",
            {"key_id": new_key.key_id},
            {"check_value": new_key.check_value, "active": 1, "created_at": _now()},
        )
    return count


def count_ciphertexts_by_key(db: Database) -> Counter[str]:
    """How many of the metadb's ciphertexts are sealed under each key id (read from the ciphertexts alone:
    no key needed). A key whose count is 0 may be deleted."""
    counts: Counter[str] = Counter()
    for row in db.query(f"SELECT {', '.join(SEALED_CREDENTIAL_COLUMNS)} FROM credentials"):
        for column in SEALED_CREDENTIAL_COLUMNS:
            if row[column]:
                counts[_key_id_of(row[column])] += 1
    return counts


def _key_id_of(token: str) -> str:
    parts = token.split(":", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "v1" else "(not in the password box format)"


def credential_context(kind: str, name: str) -> str:
    return f"credential:{kind}:{name}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
