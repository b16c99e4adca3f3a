"""The `ob-takeover` command: host types, credentials, locks and key rotation, as an operator runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from contracts.settings import load_settings
from metadb import credentials, hosts, locks, users
from metadb.db import Database
from metadb.vault import load_vault, previous_key_file
from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OB_TAKEOVER_METADB": f"sqlite:///{tmp_path / 'metadb.sqlite'}",
        "OB_TAKEOVER_MASTER_KEY_FILE": str(tmp_path / "master.key"),
    }


def run(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, dict[str, Any] | None, str]:
    code, last, _, stderr = run_cli(env, *args, stdin=stdin)
    return code, last, stderr


def test_host_type_and_credential_commands(cli_env: dict[str, str], tmp_path: Path) -> None:
    code, out, err = run(cli_env, "host-type", "add", "--name", "standard")
    assert code == 0, err
    assert out == {"hostTypeId": 1}
    code, out, _ = run(
        cli_env,
        "credential",
        "add-host",
        "--username",
        "admin",
        "--password-stdin",
        "--name",
        "ssh1",
        stdin="S3cr3t pw\n",
    )
    assert code == 0 and out is not None and out["credentialId"] == 1
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n")
    code, out, _ = run(cli_env, "credential", "add-host", "--username", "admin", "--private-key-file", str(key))
    assert code == 0 and out is not None and out["credentialId"] == 2
    code, out, _ = run(cli_env, "credential", "list")
    assert out is not None and [c["secret_type"] for c in out["credentials"]] == ["password", "private_key"]
    # Secrets are encrypted at rest: neither appears in the SQLite file.
    data = b"".join(path.read_bytes() for path in tmp_path.glob("metadb.sqlite*"))
    assert b"S3cr3t pw" not in data and b"not-a-real-key" not in data
    code, _, err = run(cli_env, "credential", "add-host", "--username", "admin", "--password-stdin", stdin="\n")
    assert code == 2 and "must not be empty" in err
    code, out, _ = run(cli_env, "host-type", "list")
    assert out is not None and out["hostTypes"][0]["name"] == "standard"


def test_lock_release_needs_confirmation(cli_env: dict[str, str], tmp_path: Path) -> None:
    run(cli_env, "lock", "list")
    db = Database(cli_env["OB_TAKEOVER_METADB"])
    locks.acquire(db, ["endpoint:127.0.0.2:2881"], 42, "takeover-127.0.0.2-2881", "127.0.0.2:2881")
    code, out, _ = run(cli_env, "lock", "list")
    assert out is not None and out["locks"][0]["task_id"] == 42
    code, _, err = run(cli_env, "lock", "release", "endpoint:127.0.0.2:2881")
    assert code == 2 and "--yes" in err
    code, out, _ = run(cli_env, "lock", "release", "endpoint:127.0.0.2:2881", "--yes")
    assert code == 0 and out == {"released": "endpoint:127.0.0.2:2881", "taskId": 42}
    assert locks.list_locks(db) == []


def test_rotate_key_while_a_worker_runs(cli_env: dict[str, str], tmp_path: Path) -> None:
    run(cli_env, "credential", "add-host", "--username", "admin", "--password-stdin", stdin="pw1\n")
    db = Database(cli_env["OB_TAKEOVER_METADB"])
    running = load_vault(load_settings(cli_env))  # a worker started before the rotation
    new_key = tmp_path / "new.key"
    code, out, err = run(cli_env, "vault", "rotate-key", "--new-key-file", str(new_key))
    assert code == 0, err
    assert out is not None and out["reencrypted"] == 1
    master = Path(cli_env["OB_TAKEOVER_MASTER_KEY_FILE"])
    assert master.read_text() == new_key.read_text()
    assert previous_key_file(master).exists() and previous_key_file(master).read_text() != new_key.read_text()
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in (new_key, master, previous_key_file(master)))
    # The running worker reads the secret, now under the new key, and encrypts under it from then on.
    assert credentials.get_credential(db, running, 1).secret == "pw1"
    assert running.key.key_id == out["keyId"]
    code, out, err = run(cli_env, "credential", "add-host", "--username", "b", "--password-stdin", stdin="pw2\n")
    assert code == 0, err
    # A key that encrypted nothing here is refused, by name.
    stranger = {**cli_env, "OB_TAKEOVER_MASTER_KEY_FILE": str(tmp_path / "stranger.key")}
    code, _, err = run(stranger, "credential", "add-host", "--username", "c", "--password-stdin", stdin="pw3\n")
    assert code == 2 and "is not the one that encrypted" in err


@pytest.mark.unit
def test_unreachable_metadb_is_named_without_password(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "OB_TAKEOVER_METADB": "mysql://ops:Hunter2@127.0.0.1:1/metadb"}
    code, _, err = run(env, "cluster", "list")
    assert code == 4
    assert "mysql://ops:***@127.0.0.1:1/metadb" in err and "Hunter2" not in err


def test_user_commands(cli_env: dict[str, str]) -> None:
    code, out, err = run(cli_env, "user", "add", "--name", "installer", "--role", "TASK_MANAGER", "--password-stdin",
                         stdin="Installer-pw-1\n")  # fmt: skip
    assert code == 0 and out == {"userId": 1}, err
    code, out, err = run(cli_env, "user", "add", "--name", "installer", "--role", "ADMIN", "--password-stdin",
                         stdin="Another-pw-12\n")  # fmt: skip
    assert code == 2 and err.strip() == "ob-takeover: user installer exists"
    code, out, err = run(cli_env, "user", "add", "--name", "x", "--role", "ADMIN", "--password-stdin", stdin="short\n")
    assert code == 2 and "at least 8 characters" in err
    code, out, _ = run(cli_env, "user", "list")
    assert out is not None and [(u["name"], u["role"]) for u in out["users"]] == [("installer", "TASK_MANAGER")]
    assert "password" not in json.dumps(out)
    code, out, err = run(cli_env, "user", "passwd", "installer", "--password-stdin", stdin="New-password-1\n")
    assert code == 0, err
    db = Database(cli_env["OB_TAKEOVER_METADB"])
    assert users.authenticate(db, "installer", "New-password-1") is not None
    assert users.authenticate(db, "installer", "Installer-pw-1") is None
    code, out, _ = run(cli_env, "user", "delete", "installer")
    assert code == 0 and users.list_users(db) == []
    code, _, err = run(cli_env, "user", "delete", "installer")
    assert code == 2 and "user installer does not exist" in err


def test_credential_bindings_and_forgetting_a_host_key(cli_env: dict[str, str]) -> None:
    code, _, err = run(cli_env, "credential", "add-cluster", "--password-stdin", stdin="pw\n")
    assert code == 2 and "--endpoint" in err  # a cluster credential is bound from the start
    code, _, err = run(cli_env, "credential", "add-cluster", "--endpoint", "10.0.0.1", "--password-stdin", stdin="p\n")
    assert code == 2 and "is not ADDRESS:PORT" in err
    code, out, err = run(
        cli_env, "credential", "add-cluster", "--endpoint", "10.0.0.1:2881", "10.0.0.2:2881", "--password-stdin",
        stdin="pw\n",
    )  # fmt: skip
    assert code == 0 and out is not None, err
    cluster = out["credentialId"]
    code, out, _ = run(cli_env, "credential", "add-host", "--username", "admin", "--hosts", "10.0.0.0/24",
                       "--password-stdin", stdin="ssh\n")  # fmt: skip
    assert code == 0 and out is not None
    host = out["credentialId"]
    code, out, _ = run(cli_env, "credential", "bind", str(cluster), "--endpoint", "[::1]:2881")
    assert code == 0 and out == {"credentialId": cluster, "endpoints": ["[::1]:2881"]}
    code, _, err = run(cli_env, "credential", "bind", str(host), "--endpoint", "10.0.0.1:2881")
    assert code == 2 and "give --hosts" in err
    code, _, err = run(cli_env, "credential", "bind", str(host), "--hosts", "not-an-ip")
    assert code == 2 and "is not an IP address or a network" in err
    code, out, _ = run(cli_env, "credential", "list")
    assert out is not None
    scopes = {row["id"]: row["scope"] for row in out["credentials"]}
    assert scopes == {cluster: "[::1]:2881", host: "10.0.0.0/24"}
    db = Database(cli_env["OB_TAKEOVER_METADB"])
    hosts.add_host_type(db, "t")
    hosts.register_host(
        db, ip="10.0.0.7", ssh_port=22, kind="DEDICATED_PHYSICAL_MACHINE", publish_ports=None, host_type_id=1,
        credential_id=host, task_id=1,
    )  # fmt: skip
    hosts.set_host_key(db, "10.0.0.7", "ssh-ed25519 AAAA")
    code, out, _ = run(cli_env, "host", "forget-key", "10.0.0.7")
    assert code == 0 and out == {"forgotten": "10.0.0.7"}
    assert hosts.find_host(db, "10.0.0.7")["host_key"] is None  # type: ignore[index]
    code, _, err = run(cli_env, "host", "forget-key", "10.0.0.8")
    assert code == 2 and "not managed here" in err


def test_a_takeover_command_without_its_cluster_says_so_before_asking_for_a_password(
    cli_env: dict[str, str],
) -> None:
    for command in ("precheck", "start"):
        code, last, stderr = run(cli_env, command)
        assert code == 2 and last is None, stderr
        assert "give --address and --port (or a --body file with them)" in stderr, stderr
        assert "password" not in stderr.lower() and "--*-stdin" not in stderr
    # Without a terminal and without --password-stdin, the message names the option to use.
    code, _, stderr = run(cli_env, "precheck", "--address", "127.0.0.1", "--port", "2881")
    assert code == 2 and "give it on stdin with --password-stdin, or run in a terminal" in stderr, stderr
    help_text = " ".join(run_cli(cli_env, "precheck", "--help")[2].split())
    for described in ("--address ADDRESS the cluster's SQL endpoint", "--port PORT its SQL port",
                      "--host-type-id HOST_TYPE_ID host type of hosts not managed yet"):  # fmt: skip
        assert described in help_text, help_text
