"""A key rotation while processes run: every process seals new secrets under the new key, so the old key
file can be deleted once `vault status` says no secret needs it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import MasterKeyError
from contracts.settings import load_settings
from metadb import credentials
from metadb import vault as vault_module
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import MasterKey, Vault, load_vault, previous_key_file
from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.unit


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "OB_TAKEOVER_METADB": f"sqlite:///{tmp_path / 'metadb.sqlite'}",
        "OB_TAKEOVER_MASTER_KEY_FILE": str(tmp_path / "master.key"),
    }
    for variable in ("OB_TAKEOVER_MASTER_KEY", "OB_TAKEOVER_MASTER_KEY_PREVIOUS"):
        env.pop(variable, None)
    return env


def run(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, dict[str, Any] | None, str, str]:
    """`ob-takeover ARGS` in a process of its own: exit code, JSON last line, stdout, stderr."""
    return run_cli(env, *args, stdin=stdin)


def test_running_vault_seals_new_secrets_under_the_rotated_key(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(cli_env)
    db = Database(settings.metadb)
    migrate(db)
    serving = load_vault(settings)  # `serve` or a worker, started before the rotation
    serving.verify(db)
    before = credentials.save_credential(
        db, serving, kind=credentials.HOST, name="before", username="u", secret="pw-before", passphrase="pp-before"
    )
    old_key_id = serving.key.key_id
    code, out, _, err = run(cli_env, "vault", "rotate-key", "--new-key-file", str(tmp_path / "new.key"))
    assert code == 0 and out is not None, err
    new_key_id = out["keyId"]
    assert new_key_id != old_key_id
    # Once the check interval has passed, the running vault seals under the new key without having read any
    # secret first (reading one under the new key used to be the only way it noticed the rotation).
    monkeypatch.setattr(vault_module, "KEY_CHECK_INTERVAL", 0)
    after = credentials.save_credential(
        db, serving, kind=credentials.HOST, name="after", username="u", secret="pw-after", passphrase="pp-after"
    )
    row = db.one("SELECT secret, passphrase FROM credentials WHERE id = ?", (after,))
    assert row is not None
    assert row["secret"].startswith(f"v1:{new_key_id}:") and row["passphrase"].startswith(f"v1:{new_key_id}:")
    # The old key file goes; a process started now reads every secret, and so does the running one.
    previous_key_file(Path(settings.master_key_file)).unlink()
    restarted = load_vault(settings)
    restarted.verify(db)
    for vault in (restarted, serving):
        for credential_id, expected in ((before, ("pw-before", "pp-before")), (after, ("pw-after", "pp-after"))):
            stored = credentials.get_credential(db, vault, credential_id)
            assert (stored.secret, stored.passphrase) == expected


def test_key_source_is_read_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    source = [old]
    reads: list[int] = []

    def reload() -> list[MasterKey]:
        reads.append(1)
        return list(source)

    monkeypatch.setattr(vault_module, "KEY_CHECK_INTERVAL", 3600)
    following = Vault(old, reload=reload)
    fixed = Vault(old)
    under_old = following.encrypt("s", "ctx")
    source[:] = [new, old]  # rotated
    assert following.encrypt("s", "ctx").startswith(f"v1:{old.key_id}:")  # within the interval: the key it has
    assert reads == []
    monkeypatch.setattr(vault_module, "KEY_CHECK_INTERVAL", 0)
    assert following.encrypt("s", "ctx").startswith(f"v1:{new.key_id}:")
    assert len(reads) == 1
    # A secret under a key it knows is read without looking at the key source.
    monkeypatch.setattr(vault_module, "KEY_CHECK_INTERVAL", 3600)
    assert following.decrypt(under_old, "ctx") == "s"
    assert len(reads) == 1
    # A vault made with a fixed key keeps it; a key it was never given stays unknown.
    monkeypatch.setattr(vault_module, "KEY_CHECK_INTERVAL", 0)
    assert fixed.encrypt("s", "ctx").startswith(f"v1:{old.key_id}:")
    with pytest.raises(MasterKeyError, match=f"encrypted with master key {new.key_id}"):
        fixed.decrypt(following.encrypt("s", "ctx"), "ctx")


def test_vault_status_counts_ciphertexts_per_key(cli_env: dict[str, str], tmp_path: Path) -> None:
    code, _, _, err = run(cli_env, "credential", "add-host", "--username", "a", "--password-stdin", stdin="pw-a\n")
    assert code == 0, err
    private_key = tmp_path / "id_ed25519"
    private_key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n")
    code, _, _, err = run(cli_env, "credential", "add-host", "--username", "b", "--private-key-file", str(private_key),
                          "--passphrase-stdin", stdin="pp-b\n")  # fmt: skip
    assert code == 0, err
    master = Path(cli_env["OB_TAKEOVER_MASTER_KEY_FILE"])
    first = MasterKey.decode(master.read_text(), "test")

    code, out, stdout, _ = run(cli_env, "vault", "status")
    assert code == 0
    assert out == {"active": first.key_id, "keys": {first.key_id: 3}, "previousKeyNeeded": False}
    assert first.key_id in stdout.splitlines()[1] and "active" in stdout.splitlines()[1]

    code, rotated, _, err = run(cli_env, "vault", "rotate-key", "--new-key-file", str(tmp_path / "new.key"))
    assert code == 0 and rotated is not None, err
    second = rotated["keyId"]
    code, out, stdout, err = run(cli_env, "vault", "status")
    assert code == 0
    assert out == {"active": second, "keys": {second: 3, first.key_id: 0}, "previousKeyNeeded": False}
    assert f"{previous_key_file(master)} may be removed" in err
    # A process that kept the old key (as every one did before the fix) seals a secret under it: now the
    # old key is needed, and status says so.
    db = Database(cli_env["OB_TAKEOVER_METADB"])
    credentials.save_credential(db, Vault(first), kind=credentials.HOST, name="stale", username="c", secret="pw-c")
    code, out, stdout, err = run(cli_env, "vault", "status")
    assert code == 0
    assert out == {"active": second, "keys": {second: 3, first.key_id: 1}, "previousKeyNeeded": True}
    assert "1 ciphertext(s) are under an old key: keep it" in err
    # Key ids only: no key material in anything printed.
    for key_file in (master, previous_key_file(master)):
        assert key_file.read_text().strip() not in stdout + err
