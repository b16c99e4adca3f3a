"""Statements and commands are built, and their answers parsed, by pure functions: tested here
without a server, against recorded outputs kept as data files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from activities import cluster_sql as sql
from activities import host_commands as commands
from activities.facts import parse_version
from contracts.errors import NotOceanBase, UnsupportedVersion

pytestmark = pytest.mark.unit

OUTPUTS = Path(__file__).resolve().parent / "data" / "host_outputs"


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", "'plain'"),
        ("it's", "'it\\'s'"),
        ("back\\slash", "'back\\\\slash'"),
        ("%_x", "'%_x'"),
        ("line\nbreak", "'line\\nbreak'"),
        ("'; DROP USER root; --", "'\\'; DROP USER root; --'"),
        ("密码", "'密码'"),
    ],
)
def test_quote(value: str, literal: str) -> None:
    assert sql.quote(value) == literal


def test_passwords_are_masked() -> None:
    statement = sql.create_user("ocp_monitor", "it's \\ secret")
    assert statement == "CREATE USER IF NOT EXISTS ocp_monitor IDENTIFIED BY 'it\\'s \\\\ secret'"
    assert sql.mask(statement) == "CREATE USER IF NOT EXISTS ocp_monitor IDENTIFIED BY '***'"
    assert "secret" not in sql.mask(sql.alter_user_password("proxyro", "secret"))


def test_rs_list_parsers() -> None:
    assert sql.rs_list_from_parameter("10.0.0.5:2882:2881;10.0.0.6:2882:2881") == [
        {"address": "10.0.0.5:2882", "role": "LEADER", "sql_port": 2881},
        {"address": "10.0.0.6:2882", "role": "FOLLOWER", "sql_port": 2881},
    ]
    rows = [{"SVR_IP": "10.0.0.6", "SVR_PORT": 2882, "SQL_PORT": 2881, "ZONE": "z2", "ROLE": "LEADER"}]
    assert sql.rs_list_from_locations(rows) == [{"address": "10.0.0.6:2882", "role": "LEADER", "sql_port": 2881}]


@pytest.mark.parametrize(
    ("text", "version"),
    [("5.7.25-OceanBase_CE-v4.2.1.8", "4.2.1.8"), ("5.7.25-OceanBase-v4.3.0.1", "4.3.0.1")],
)
def test_version_parsed(text: str, version: str) -> None:
    assert parse_version(text) == version


def test_versions_rejected() -> None:
    with pytest.raises(UnsupportedVersion, match=r"OceanBase 3\.1\.4 found"):
        parse_version("5.7.25-OceanBase-v3.1.4")
    with pytest.raises(NotOceanBase, match=r"10\.11\.6-MariaDB"):
        parse_version("10.11.6-MariaDB-0+deb12u1")


def test_host_facts_from_recorded_output() -> None:
    facts = commands.parse_host_facts((OUTPUTS / "facts_debian12.txt").read_text())
    assert facts.hostname == "ob-node-01" and facts.os == "Debian GNU/Linux 12 (bookworm)"
    assert (facts.arch, facts.cpus, facts.memory_kb) == ("x86_64", 16, 65802316)
    assert facts.as_dict(0.0421)["clock_offset_s"] == 0.042
    with pytest.raises(ValueError, match="unexpected facts output"):
        commands.parse_host_facts("hostname=x\n")


def test_listener_from_recorded_ss_output() -> None:
    output = (OUTPUTS / "ss_listen.txt").read_text()
    assert commands.parse_listener(output, "10.0.0.6", 2881) == ("observer", 5151)
    assert commands.parse_listener(output, "10.0.0.7", 2881) is None
    assert commands.parse_listener('LISTEN 0 128 *:2881 *:* users:(("observer",pid=7,fd=3))\n', "1.2.3.4", 2881) == (
        "observer",
        7,
    )


def test_process_details_from_recorded_output() -> None:
    info = commands.parse_process_details((OUTPUTS / "process_details.txt").read_text(), 4242, "observer")
    assert info["os_user"] == "admin"
    assert info["install_path"] == "/home/admin/oceanbase"
    assert info["data_dir"] == "/data/1/obcluster"
    assert info["log_dir"] == "/home/admin/oceanbase/log"
    assert info["command_line"].startswith("/home/admin/oceanbase/bin/observer -r 10.0.0.5:2882:2881 -p 2881")


def test_agent_secret_round_trip_and_document() -> None:
    key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    token = commands.encrypt_for_agent(key, "monitor-pw")
    assert token.startswith("aesgcm:") and "monitor-pw" not in token
    assert commands.decrypt_for_agent(key, token) == "monitor-pw"
    document = json.loads(
        commands.agent_config(
            cluster_name="c", ob_cluster_id=1, monitor_user="ocp_monitor", monitor_password_encrypted=token,
            servers=[], config_url="http://127.0.0.1:8080/services",
        )
    )  # fmt: skip
    assert document["monitor"] == {"user": "ocp_monitor", "password": token}


def test_agent_file_commands_keep_the_previous_version_once() -> None:
    write = commands.write_agent_file("modules.json", 42, 10)
    assert 'cp -p "$HOME/ocp_agent/conf/modules.json" "$HOME/ocp_agent/conf/modules.json.before-42"' in write
    assert "mv -f" in write and "cat >" in write
    restore = commands.restore_agent_file("modules.json", 42)
    assert "modules.json.before-42" in restore


def test_agent_file_write_twice_then_restore_in_real_bash(tmp_path: Path) -> None:
    import subprocess

    def bash(script: str, stdin: str = "", path: str = "/usr/bin:/bin") -> str:
        done = subprocess.run(
            ["bash", "-c", script],
            input=stdin,
            capture_output=True,
            text=True,
            env={"HOME": str(tmp_path), "PATH": path},
            check=True,
        )
        return done.stdout

    conf = tmp_path / "ocp_agent" / "conf"
    conf.mkdir(parents=True)
    (conf / "ob_cluster.json").write_text("old\n")
    bash(commands.write_agent_file("ob_cluster.json", 7, 4), "new\n")
    bash(commands.write_agent_file("ob_cluster.json", 7, 6), "newer\n")
    with pytest.raises(subprocess.CalledProcessError):
        bash(commands.write_agent_file("ob_cluster.json", 7, 100), "cut sho")
    assert (conf / "ob_cluster.json").read_text() == "newer\n"
    assert (conf / "ob_cluster.json.before-7").read_text() == "old\n"
    assert sorted(p.name for p in conf.iterdir()) == ["ob_cluster.json", "ob_cluster.json.before-7"]
    # A failing step (here `mv`) leaves no temporary file behind.
    broken = tmp_path / "broken-bin"
    broken.mkdir()
    (broken / "mv").write_text("#!/bin/sh\necho 'mv: disk full' >&2; exit 1\n")
    (broken / "mv").chmod(0o755)
    with pytest.raises(subprocess.CalledProcessError):
        bash(commands.write_agent_file("ob_cluster.json", 7, 4), "new\n", path=f"{broken}:/usr/bin:/bin")
    assert sorted(p.name for p in conf.iterdir()) == ["ob_cluster.json", "ob_cluster.json.before-7"]
    # What a write killed mid-way left goes with the restore.
    (conf / ".ob_cluster.json.4242").write_text("ne")
    assert bash(commands.restore_agent_file("ob_cluster.json", 7)).strip() == "restored"
    assert sorted(p.name for p in conf.iterdir()) == ["ob_cluster.json"]
    assert (conf / "ob_cluster.json").read_text() == "old\n"
    bash(commands.write_agent_file("modules.json", 8, 3), "{}\n")
    assert bash(commands.restore_agent_file("modules.json", 8)).strip() == "removed"
    assert not (conf / "modules.json").exists()


def test_server_errors_never_quote_a_password_back() -> None:
    import pymysql

    from activities.ob_sys_client import ObSysClient
    from contracts.topology import ClusterEndpoint

    client = ObSysClient(ClusterEndpoint(address="127.0.0.1", port=2881, root_sys_password="x"))
    statement = sql.alter_user_password("proxyro", "Secr3t-pw")
    error = pymysql.err.ProgrammingError(1064, f"You have an error near '{statement[10:]}' at line 1")
    translated = client._translate(error, statement)
    assert "Secr3t-pw" not in str(translated)
    assert "near '***' at line" in str(translated) and "in `ALTER …`" in str(translated)


def test_disk_free_of_the_observer_directories_in_real_bash(tmp_path: Path) -> None:
    import subprocess

    run = subprocess.run(["bash", "-c", commands.disk_free(str(tmp_path), "/")], capture_output=True, text=True)
    assert run.returncode == 0 and all(kb > 0 for kb in commands.parse_disk_free(run.stdout, 2))
    missing = subprocess.run(["bash", "-c", commands.disk_free(str(tmp_path / "gone"))], capture_output=True, text=True)
    assert missing.returncode != 0 and "No such file" in missing.stderr
    with pytest.raises(ValueError, match="unexpected df output"):
        commands.parse_disk_free("12\n", 2)


def test_the_agent_reload_signals_only_the_agent(tmp_path: Path) -> None:
    """The pid file is not trusted: "-1" (every process), garbage or another program's pid gets no signal."""
    run = tmp_path / "ocp_agent" / "run"
    run.mkdir(parents=True)
    pid_file = run / "ocp_agent.pid"

    def reload() -> str:
        done = subprocess.run(
            ["bash", "-c", commands.RELOAD_AGENT],
            capture_output=True,
            text=True,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
            check=True,
        )
        return done.stdout.strip()

    for garbage in ("-1", "0", "abc", "", "12 34; touch pwned"):
        pid_file.write_text(garbage)
        assert reload().startswith("no agent process running"), garbage
    assert not (tmp_path / "pwned").exists()
    bystander = subprocess.Popen(["sleep", "30"])
    agent_binary = tmp_path / "ocp_agentd"
    shutil.copy("/bin/sleep", agent_binary)
    agent = subprocess.Popen([str(agent_binary), "30"])
    try:
        pid_file.write_text(f"{bystander.pid}\n")
        assert (
            reload()
            == f"no agent process running (pid {bystander.pid} in $HOME/ocp_agent/run/ocp_agent.pid is sleep)".replace(
                "$HOME", str(tmp_path)
            )
        )
        assert bystander.poll() is None  # not signalled
        pid_file.write_text(f"{agent.pid}\n")
        assert reload() == f"agent {agent.pid} reloaded"
        assert agent.wait(5) == -signal.SIGHUP
    finally:
        bystander.kill()
        agent.kill()


def test_disk_free_takes_paths_that_look_like_options(tmp_path: Path) -> None:
    (tmp_path / "-h").mkdir()
    done = subprocess.run(
        ["bash", "-c", commands.disk_free("-h", str(tmp_path))],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert commands.parse_disk_free(done.stdout, 2)[0] > 0


def test_the_observer_command_reads_the_process_on_the_servers_address(tmp_path: Path) -> None:
    """One command finds the listener on the server's address (not the first `ss` line) and reads its
    process; with no listener there, it answers the listeners alone. Real bash, `ps` and /proc; `ss` is a
    stand-in that lists another address's listener first."""
    me, other = os.getpid(), os.getppid()
    lines = [
        f'LISTEN 0 128 10.0.0.9:2881 0.0.0.0:* users:(("observer",pid={other},fd=6))',
        f'LISTEN 0 128 10.0.0.5:2881 0.0.0.0:* users:(("observer",pid={me},fd=6))',
    ]
    ss = tmp_path / "ss"
    ss.write_text('#!/bin/sh\ncat "$(dirname "$0")/listeners"\n')
    ss.chmod(0o755)
    (tmp_path / "listeners").write_text("\n".join(lines) + "\n")
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}

    def run(ip: str) -> list[str]:
        done = subprocess.run(
            ["bash", "-c", commands.observer_on_port(ip, 2881)], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.split(f"{commands.SECTION}\n", 2)

    listeners, pid, details = run("10.0.0.5")
    assert commands.parse_listener(listeners, "10.0.0.5", 2881) == ("observer", me)
    assert pid.strip() == str(me)
    assert commands.parse_process_details(details, me, "observer")["install_path"] == os.path.realpath(os.getcwd())
    assert run("10.0.0.7") == ["\n".join(lines) + "\n", ""]
