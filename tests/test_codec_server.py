"""The payload codec server: its own listener, a token when configured, secrets masked in what it decodes."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from contracts.errors import CodecKeyError
from contracts.settings import load_settings
from metadb.db import Database
from metadb.migrate import migrate
from ob_takeover.codec import EncryptionCodec, load_codec_keys
from ob_takeover.service import create_app, create_codec_app, serve
from tests.support.mariadb import free_port

pytestmark = pytest.mark.unit

UI = "http://127.0.0.1:8233"


def body_of(payloads: list[Payload]) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def plain_key_id(encrypted: str) -> bytes:
    (payload,) = json_format.Parse(encrypted, Payloads()).payloads
    return payload.metadata["encryption-key-id"]


async def post(url: str, body: str | bytes, headers: dict[str, str]) -> requests.Response:
    return await asyncio.to_thread(requests.post, url, data=body, headers=headers, timeout=10)


async def test_the_codec_needs_its_token_masks_secrets_and_refuses_garbage(tmp_path: Path) -> None:
    codec = EncryptionCodec(load_codec_keys(load_settings()))
    request = {
        "rootSysPassword": "S3cret-root",
        "proxyroPassword": "S3cret-proxyro",
        "address": "127.0.0.9",
        "hostInfo": {"credentialId": 1, "privateKey": "-----BEGIN KEY-----"},
    }
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(request).encode())
    encrypted = body_of(await codec.encode([plain]))
    port = free_port()
    running = await serve(create_codec_app(codec, cors_origins=UI, token="T0ken-for-the-ui"), "127.0.0.1", port)
    decode = f"http://127.0.0.1:{port}/codec/decode"
    try:
        assert (await post(decode, encrypted, {"Content-Type": "application/json"})).status_code == 401
        wrong = await post(decode, encrypted, {"Authorization": "Bearer guess"})
        assert wrong.status_code == 401 and "S3cret" not in wrong.text
        reply = await post(decode, encrypted, {"Authorization": "Bearer T0ken-for-the-ui", "Origin": UI})
        assert reply.status_code == 200, reply.text
        assert reply.headers["Access-Control-Allow-Origin"] == UI
        (decoded,) = json.loads(reply.text)["payloads"]
        shown: dict[str, Any] = json.loads(base64.b64decode(decoded["data"]))
        assert shown == {
            "rootSysPassword": "******",
            "proxyroPassword": "******",
            "address": "127.0.0.9",
            "hostInfo": {"credentialId": 1, "privateKey": "******"},
        }
        assert "S3cret" not in reply.text
        # The `temporal` CLI's --codec-auth sends the token as it is.
        assert (await post(decode, encrypted, {"Authorization": "T0ken-for-the-ui"})).status_code == 200
        # Another origin is never allowed, whatever it sends.
        other = await post(decode, encrypted, {"Authorization": "T0ken-for-the-ui", "Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
        # Garbage is a 400 naming the problem, not a 500.
        unknown = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": b"nope"}, data=b"x" * 40)
        short = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": plain_key_id(encrypted)})
        for body in ("{not json", body_of([unknown]), body_of([short]), b'{"payloads": [\xff\xfe]}'):
            bad = await post(decode, body, {"Authorization": "T0ken-for-the-ui"})
            assert bad.status_code == 400, bad.text
        # A large task's payloads decode; a flood does not.
        big = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"x": "y" * (4 << 20)}).encode())
        reply = await post(decode, body_of(await codec.encode([big])), {"Authorization": "T0ken-for-the-ui"})
        assert reply.status_code == 200 and len(reply.content) > 4 << 20
        flood = await post(decode, b"{" + b" " * (17 << 20), {"Authorization": "T0ken-for-the-ui"})
        assert flood.status_code == 413
    finally:
        await running.cleanup()
    # The config server's listener, which every observer reaches, has no codec.
    db = Database(f"sqlite:///{tmp_path / 'metadb.sqlite'}")
    migrate(db)
    port = free_port()
    service = await serve(create_app(db), "127.0.0.1", port)
    try:
        reply = await post(f"http://127.0.0.1:{port}/codec/decode", encrypted, {})
        assert reply.status_code == 404
    finally:
        await service.cleanup()


async def test_large_payloads_are_compressed_before_encryption_and_small_ones_never() -> None:
    codec = EncryptionCodec([bytes(32)])
    subtask = {"name": "Update server process info", "nodeType": "JAVA_TASK", "status": "SUCCESSFUL", "runTime": 1}
    task = {"subtasks": [{**subtask, "id": 100000 + i, "node": f"10.0.{i // 250}.{i % 250}:2882"} for i in range(9000)]}
    large = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(task).encode())
    small = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"proxyroPassword": "x" * 20000}).encode())
    (sealed_large, sealed_small) = await codec.encode([large, small])
    # A 9,000-subtask task JSON (a takeover of about 1,000 servers) is well under Temporal's 512 KB warning.
    assert len(large.data) > 1_000_000 and len(sealed_large.data) < 200_000, len(sealed_large.data)
    assert sealed_large.metadata["encryption-compression"] == b"zlib"
    assert "encryption-compression" not in sealed_small.metadata and len(sealed_small.data) > 20_000
    assert await codec.decode([sealed_large, sealed_small]) == [large, small]
    # What a worker without compression wrote still decodes; a compression this codec does not know is refused.
    unknown = Payload()
    unknown.CopyFrom(sealed_large)
    unknown.metadata["encryption-compression"] = b"brotli"
    with pytest.raises(CodecKeyError, match="compressed with brotli"):
        await codec.decode([unknown])
