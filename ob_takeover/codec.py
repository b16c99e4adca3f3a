"""Encryption of everything the project stores in Temporal: payloads (inputs, results, details,
summaries) with an AES-GCM payload codec, and stack traces and unclassified error messages through the
failure converter that encodes them as payloads. The messages of the project's own errors
(`contracts.errors.READABLE_FAILURE_TYPES`, built never to carry a secret) stay readable, so that the
`temporal` CLI, which does not decode failures, still says why a takeover failed.

Keys: `OB_TAKEOVER_CODEC_KEY` (base64 of 32 bytes) or the key file `OB_TAKEOVER_CODEC_KEY_FILE`
(default `var/codec.key`, created 0600 on first use). Earlier keys, kept for decoding after a
rotation, are the further lines of the key file or `OB_TAKEOVER_CODEC_OLD_KEYS` (comma-separated).
Payloads that arrive unencrypted (a `temporal workflow start` without `--codec-endpoint`) are
accepted; one that carries a password is logged as a warning, without the password.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import re
import secrets
import zlib
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConverter

from contracts.errors import READABLE_FAILURE_TYPES, CodecKeyError
from contracts.request import SECRET_FIELDS
from contracts.settings import Settings, load_settings
from metadb.vault import create_key_file, decode_key

log = logging.getLogger("ob_takeover.codec")

CODEC_KEY_ENV = "OB_TAKEOVER_CODEC_KEY"
CODEC_OLD_KEYS_ENV = "OB_TAKEOVER_CODEC_OLD_KEYS"
ENCODING = b"binary/encrypted"
# Payloads larger than this are compressed before they are encrypted: a large cluster's task JSON (hundreds of
# KB, very repetitive) stays far below Temporal's payload limits. Small payloads, those that may carry a
# secret next to a value a caller chose, are never compressed, so their length says nothing of the secret.
COMPRESS_ABOVE = 32 * 1024
COMPRESSION = b"zlib"
# The most a compressed payload may grow back to (Temporal refuses payloads over 2 MB long before this).
DECOMPRESSED_LIMIT = 64 << 20
# A secret field with a value: in a payload that arrives unencrypted, worth a warning.
_SECRET_FIELD = re.compile(rb'"(' + "|".join(map(re.escape, sorted(SECRET_FIELDS))).encode() + rb')"\s*:\s*"[^"]')


def _decode_key(text: str, source: str) -> bytes:
    return decode_key(text, source, CodecKeyError)


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"codec-key-id" + key).hexdigest()[:16]


def load_codec_keys(settings: Settings) -> list[bytes]:
    """The current key first, then older keys kept for decoding."""
    if settings.codec_key:
        keys = [_decode_key(settings.codec_key, CODEC_KEY_ENV)]
        old = settings.codec_old_keys or ""
        keys += [_decode_key(k, CODEC_OLD_KEYS_ENV) for k in old.split(",") if k.strip()]
        return keys
    path = Path(settings.codec_key_file)
    if not path.exists():
        create_key_file(path, base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    if path.stat().st_mode & 0o077:
        raise CodecKeyError(f"codec key file {path} has mode {path.stat().st_mode & 0o777:o}; make it 0600")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise CodecKeyError(f"codec key file {path} is empty")
    return [_decode_key(line, f"codec key file {path}") for line in lines]


class EncryptionCodec(PayloadCodec):
    """AES-GCM over each payload; the key id travels in the payload's metadata."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise CodecKeyError("no codec key")
        self._current = keys[0]
        self._current_id = key_id(keys[0]).encode()
        self._keys = {key_id(k).encode(): AESGCM(k) for k in keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = secrets.token_bytes(12)
        plain = payload.SerializeToString()
        metadata = {"encoding": ENCODING, "encryption-key-id": self._current_id}
        if len(plain) > COMPRESS_ABOVE:
            plain = zlib.compress(plain, 6)
            metadata["encryption-compression"] = COMPRESSION
        sealed = self._keys[self._current_id].encrypt(nonce, plain, None)
        return Payload(metadata=metadata, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding", b"") != ENCODING:
            if _SECRET_FIELD.search(payload.data):
                log.warning(
                    "a payload arrived unencrypted with a password in it; start takeovers with the project's "
                    "client or `temporal … --codec-endpoint`, or send rootSysCredentialId instead of the password"
                )
            return payload
        key_name = payload.metadata.get("encryption-key-id", b"")
        cipher = self._keys.get(key_name)
        if cipher is None:
            raise CodecKeyError(f"payload encrypted with unknown codec key {key_name.decode(errors='replace')}")
        try:
            plain = cipher.decrypt(payload.data[:12], payload.data[12:], None)
        except InvalidTag:
            raise CodecKeyError("payload does not decrypt: altered, or encrypted with another key") from None
        compression = payload.metadata.get("encryption-compression", b"")
        if compression == COMPRESSION:
            plain = _decompress(plain)
        elif compression:
            raise CodecKeyError(f"payload compressed with {compression.decode(errors='replace')}, unknown here")
        return Payload.FromString(plain)


def _decompress(data: bytes) -> bytes:
    """zlib's inflate, bounded: an authenticated payload cannot be a bomb, but a bound costs nothing."""
    inflater = zlib.decompressobj()
    plain = inflater.decompress(data, DECOMPRESSED_LIMIT)
    if inflater.unconsumed_tail or not inflater.eof:
        raise CodecKeyError(f"payload inflates past {DECOMPRESSED_LIMIT >> 20} MB or is truncated")
    return plain


class ReadableFailureConverter(DefaultFailureConverter):
    """Stack traces, and the messages of failures that are not the project's own, go into the failure's
    encoded attributes (encrypted by the codec); the project's error messages stay in clear."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=False)

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        super().to_failure(exception, payload_converter, failure)
        # SDK failures (timeouts, cancellations, the activity and child-workflow wrappers) say only what the
        # SDK says; an application failure is readable only when it is one of the project's types.
        readable = (
            not failure.HasField("application_failure_info")
            or failure.application_failure_info.type in READABLE_FAILURE_TYPES
        )
        if readable and not failure.stack_trace:
            return
        # Readers that decode (the Temporal UI, the CLI with --codec-endpoint) take the message from here too.
        attributes = {"message": failure.message, "stack_trace": failure.stack_trace}
        if not readable:
            failure.message = "Encoded failure"
        failure.encoded_attributes.CopyFrom(payload_converter.to_payloads([attributes])[0])
        failure.stack_trace = ""


def data_converter(settings: Settings | None = None) -> DataConverter:
    """The project's data converter: pydantic payloads, encrypted; failures as `ReadableFailureConverter`."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(load_codec_keys(settings or load_settings())),
        failure_converter_class=ReadableFailureConverter,
    )
