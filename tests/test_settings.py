"""Settings: one loader for every process; a config file, the environment and Temporal's own profiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from contracts.settings import SettingsError, load_settings
from metadb import clusters
from metadb.db import Database
from metadb.migrate import migrate
from ob_takeover.connection import connect_options
from workflows.sandbox import workflow_runner

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def test_the_environment_wins_over_the_file_which_wins_over_the_defaults(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "ob-takeover.toml"
    config.parent.mkdir()
    config.write_text('metadb = "data/metadb.sqlite"\npoll_interval = 0.5\ntask_queue = "from-file"\n')
    settings = load_settings({"OB_TAKEOVER_CONFIG": str(config), "OB_TAKEOVER_TASK_QUEUE": "from-env"})
    assert settings.task_queue == "from-env"
    assert settings.poll_interval == 0.5
    assert settings.stop_grace == 10
    # A relative path in the file is relative to the file, wherever the command runs.
    assert settings.metadb == str(tmp_path / "conf" / "data" / "metadb.sqlite")
    assert settings.sources == {
        "metadb": f"file {config}",
        "poll_interval": f"file {config}",
        "task_queue": "env OB_TAKEOVER_TASK_QUEUE",
    }
    # Workflows run in the sandbox unless a deployment turns it off.
    assert settings.workflow_sandbox is True
    assert isinstance(workflow_runner(settings.workflow_sandbox), SandboxedWorkflowRunner)
    unsandboxed = load_settings({"OB_TAKEOVER_WORKFLOW_SANDBOX": "false"}).workflow_sandbox
    assert isinstance(workflow_runner(unsandboxed), UnsandboxedWorkflowRunner)
    sqlite_url = tmp_path / "url.toml"
    sqlite_url.write_text('metadb = "sqlite:///var/m.sqlite"\n')
    assert load_settings({}, config_file=str(sqlite_url)).metadb == f"sqlite:///{tmp_path}/var/m.sqlite"


@pytest.mark.parametrize(
    ("environ", "config", "message"),
    [
        ({"OB_TAKEOVER_POLL_INTERVAL": "soon"}, None, "OB_TAKEOVER_POLL_INTERVAL: Input should be a valid number"),
        ({"OB_TAKEOVER_STOP_GRACE": "7200"}, None, "OB_TAKEOVER_STOP_GRACE: Input should be less than or equal"),
        ({"OB_TAKEOVER_HOST_KEY_POLICY": "yes"}, None, "OB_TAKEOVER_HOST_KEY_POLICY: Input should be 'known_hosts'"),
        ({}, "poll_intervall = 1\n", "unknown setting 'poll_intervall'"),
        ({}, "timeout_scale = -1\n", "timeout_scale in .*: Input should be greater than 0"),
        ({}, "metadb = \n", "cannot be read"),
    ],
)
def test_a_wrong_setting_is_named(tmp_path: Path, environ: dict[str, str], config: str | None, message: str) -> None:
    if config is not None:
        path = tmp_path / "ob-takeover.toml"
        path.write_text(config)
        environ = {**environ, "OB_TAKEOVER_CONFIG": str(path)}
    with pytest.raises(SettingsError, match=message):
        load_settings(environ)


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({"OB_TAKEOVER_CONFIG": str(tmp_path / "nowhere.toml")})


def test_temporal_profiles_are_used_and_our_settings_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = tmp_path / "temporal.toml"
    profile.write_text(
        '[profile.default]\naddress = "127.0.0.9:7233"\nnamespace = "ops"\n'
        '[profile.staging]\naddress = "127.0.0.10:7233"\nnamespace = "staging"\n'
    )
    for variable in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profile))
    options = connect_options(load_settings({}))
    assert (options["target_host"], options["namespace"]) == ("127.0.0.9:7233", "ops")
    staging = connect_options(load_settings({"TEMPORAL_PROFILE": "staging"}))
    assert (staging["target_host"], staging["namespace"]) == ("127.0.0.10:7233", "staging")
    ours = connect_options(load_settings({"TEMPORAL_ADDRESS": "127.0.0.11:7233"}))
    assert (ours["target_host"], ours["namespace"]) == ("127.0.0.11:7233", "ops")


def cli(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any] | None, str, str]:
    process = subprocess.run(
        [sys.executable, "-c", "from ob_takeover.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        timeout=60,
    )
    lines = process.stdout.strip().splitlines()
    last = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return process.returncode, last, process.stdout, process.stderr


def test_config_show_masks_secrets_and_names_sources(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OB_TAKEOVER_MASTER_KEY": "bWFzdGVyLWtleS1tYXN0ZXIta2V5LW1hc3Rlci1rZXkhIQ==",
        "OB_TAKEOVER_METADB": "mysql://ops:Hunter2-secret@127.0.0.1:3306/metadb",
        "OB_TAKEOVER_ROOT_PASSWORD": "Root-Secret-9",
    }
    code, out, stdout, stderr = cli(tmp_path, env, "config", "show")
    assert code == 0, stderr
    assert out is not None
    for secret in ("bWFzdGVyLWtleS1tYXN0ZXIta2V5", "Hunter2-secret", "Root-Secret-9"):
        assert secret not in stdout + stderr
    assert out["settings"]["master_key"] == "******"
    assert out["settings"]["root_password"] == "******"
    assert out["settings"]["metadb"] == "mysql://ops:******@127.0.0.1:3306/metadb"
    assert "env OB_TAKEOVER_METADB" in stdout and "default" in stdout
    # A password with an unencoded @ is masked whole, not up to its @.
    env["OB_TAKEOVER_METADB"] = "mysql://ops:Hunter2@secret@127.0.0.1:3306/metadb"
    code, out, stdout, stderr = cli(tmp_path, env, "config", "show")
    assert code == 0 and out is not None, stderr
    assert "Hunter2" not in stdout + stderr and "secret@" not in stdout + stderr
    assert out["settings"]["metadb"] == "mysql://ops:******@127.0.0.1:3306/metadb"


def test_commands_run_where_the_config_file_is_use_its_metadb(tmp_path: Path) -> None:
    """What the demo relies on: its ob-takeover.toml makes `ob-takeover cluster list` there show its cluster."""
    project = tmp_path / "project"
    (project / "var").mkdir(parents=True)
    (project / "ob-takeover.toml").write_text('metadb = "var/demo.sqlite"\nmaster_key_file = "var/master.key"\n')
    db = Database(f"sqlite:///{project / 'var' / 'demo.sqlite'}")
    migrate(db)
    clusters.create_cluster_record(
        db, name="democluster", ob_cluster_id=7, address="127.0.10.2", port=2881,
        connection_mode="direct", version="4.2.1.8", task_id=1,
    )  # fmt: skip
    db.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_TAKEOVER_")}
    code, out, _, stderr = cli(project, env, "cluster", "list")
    assert code == 0, stderr
    assert out is not None and [c["name"] for c in out["clusters"]] == ["democluster"]
    # Elsewhere, the default metadb is empty, and the command says which metadb it read.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, out, _, stderr = cli(elsewhere, env, "cluster", "list")
    assert code == 0 and out == {"clusters": []}
    assert f"no managed clusters in metadb {elsewhere}/var/metadb.sqlite" in stderr
    assert "metadb from default" in stderr


def test_a_closed_pipe_is_no_error(tmp_path: Path) -> None:
    """`ob-takeover … | head -1` prints the first line and nothing about a broken pipe."""
    db = Database(f"sqlite:///{tmp_path / 'metadb.sqlite'}")
    migrate(db)
    with db.transaction():
        for number in range(3000):  # more than a pipe's buffer holds, so the writer meets the closed pipe
            db.execute(
                "INSERT INTO host_types (name, description, created_at) VALUES (?, ?, ?)",
                (f"type-{number}", "x" * 40, "2026-01-01T00:00:00+00:00"),
            )
    db.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OB_TAKEOVER_METADB": str(tmp_path / "metadb.sqlite")}
    done = subprocess.run(
        ["bash", "-c", f"{sys.executable} -c 'from ob_takeover.cli import main; main()' host-type list | head -1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, env=env,
    )  # fmt: skip
    assert done.stdout.startswith("ID") and done.stderr == "", done.stderr


def test_temporal_tls_and_api_keys_come_from_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mTLS and API keys (Temporal Cloud) are configured as for the `temporal` CLI and reach the client."""
    profile = tmp_path / "temporal.toml"
    profile.write_text(
        '[profile.cloud]\naddress = "ns.acct.tmprl.cloud:7233"\nnamespace = "ns.acct"\napi_key = "k-123"\n'
        '[profile.mtls]\naddress = "127.0.0.12:7233"\n'
        f'[profile.mtls.tls]\nclient_cert_path = "{tmp_path}/c.pem"\nclient_key_path = "{tmp_path}/k.pem"\n'
        'server_name = "temporal.internal"\n'
    )
    (tmp_path / "c.pem").write_text("CERT")
    (tmp_path / "k.pem").write_text("KEY")
    for variable in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_TLS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profile))
    cloud = connect_options(load_settings({"TEMPORAL_PROFILE": "cloud"}))
    assert cloud["api_key"] == "k-123" and cloud["tls"]  # an API key turns TLS on
    mtls = connect_options(load_settings({"TEMPORAL_PROFILE": "mtls"}))
    tls = mtls["tls"]
    assert (tls.client_cert, tls.client_private_key, tls.domain) == (b"CERT", b"KEY", "temporal.internal")
