"""The simulator is strict like OceanBase: unknown syntax, tables, parameters and bad logins fail."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from tests.support.simulator import Simulation, simulation


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    with simulation(tmp_path_factory.mktemp("obsim"), zones=2, servers_per_zone=1, hosts=False) as running:
        yield running


def connect(
    sim: Simulation, user: str = "root@sys", password: str | None = None, server: int = 0
) -> pymysql.Connection:
    address = sim.ready["servers"][server]["address"]
    return pymysql.connect(
        host=address, port=sim.sql_port, user=user, password=sim.root_password if password is None else password,
        ssl_disabled=True, autocommit=True,
    )  # fmt: skip


def error_of(sim: Simulation, statement: str) -> tuple[int, str]:
    connection = connect(sim)
    try:
        with connection.cursor() as cursor, pytest.raises(pymysql.err.MySQLError) as info:
            cursor.execute(statement)
        return info.value.args[0], info.value.args[1]
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("statement", "code", "message"),
    [
        ("SELEC 1", 1064, "You have an error in your SQL syntax"),
        ("SELECT * FROM oceanbase.DBA_NOTHING", 1146, "Table 'oceanbase.DBA_NOTHING' doesn't exist"),
        ("ALTER SYSTEM SET no_such_parameter = 'x'", 5099, "System config unknown"),
        ("CREATE USER root IDENTIFIED BY 'x'", 1396, "Operation CREATE USER failed for 'root'@'%'"),
        ("DROP USER nobody", 1396, "Operation DROP USER failed for 'nobody'@'%'"),
        ("CALL DBMS_RESOURCE_MANAGER.NO_SUCH()", 1305, "does not exist"),
    ],
)
def test_errors_as_oceanbase_answers_them(sim: Simulation, statement: str, code: int, message: str) -> None:
    got_code, got_message = error_of(sim, statement)
    assert got_code == code and message in got_message


def test_logins(sim: Simulation) -> None:
    with pytest.raises(pymysql.err.OperationalError) as info:
        connect(sim, password="wrong")
    assert info.value.args[0] == 1045 and "Access denied for user 'root'" in info.value.args[1]
    connect(sim, user=f"root@sys#{sim.ready['cluster']['name']}:{sim.ready['cluster']['id']}").close()
    with pytest.raises(pymysql.err.OperationalError):
        connect(sim, user="root@sys#othercluster").close()
    with pytest.raises(pymysql.err.OperationalError):
        connect(sim, user="ghost", password="x").close()


def test_views_and_statements_change_state(sim: Simulation) -> None:
    connection = connect(sim, server=1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT ZONE, REGION, IDC FROM oceanbase.DBA_OB_ZONES ORDER BY ZONE")
        assert cursor.fetchall() == (("zone1", "sys_region", "idc1"), ("zone2", "sys_region", "idc2"))
        cursor.execute("CREATE USER IF NOT EXISTS u1 IDENTIFIED BY 'p''w\\\\x'")
        cursor.execute("GRANT SELECT ON oceanbase.* TO u1")
        cursor.execute("SHOW GRANTS FOR u1")
        assert cursor.fetchall() == (("GRANT USAGE ON *.* TO 'u1'",), ("GRANT SELECT ON `oceanbase`.* TO 'u1'",))
        cursor.execute("ALTER SYSTEM SET obconfig_url = 'http://127.0.0.1:1/x'")
        cursor.execute("SHOW PARAMETERS LIKE 'obconfig_url'")
        assert {row[6] for row in cursor.fetchall()} == {"http://127.0.0.1:1/x"}
    connection.close()
    connect(sim, user="u1", password="p'w\\x").close()
    state = sim.state()
    assert "u1" in state["users"]
    logged = state["statements"][f"{sim.ready['servers'][1]['address']}:2882"]
    assert "CREATE USER IF NOT EXISTS u1 IDENTIFIED BY '***'" in logged
    assert not any("p''w" in line for line in logged)


def test_injected_fault_fails_the_matching_statement_once(sim: Simulation) -> None:
    sim.fault("DBA_OB_SERVERS", error=4012, message="Timeout", times=1)
    assert error_of(sim, "SELECT * FROM oceanbase.DBA_OB_SERVERS") == (4012, "Timeout")
    connection = connect(sim)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM oceanbase.DBA_OB_SERVERS")
        assert cursor.fetchone() == (2,)
    connection.close()


def test_io_calibration_runs_then_is_ready(sim: Simulation) -> None:
    import time

    server = sim.ready["servers"][0]
    connection = connect(sim)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER SYSTEM RUN JOB 'io_calibration' SERVER = '{server['address']}:{server['rpc_port']}'")
        status = f"SELECT STATUS FROM oceanbase.GV$OB_IO_CALIBRATION_STATUS WHERE SVR_IP = '{server['address']}'"
        cursor.execute(status)
        assert cursor.fetchone() == ("IN PROGRESS",)
        time.sleep(0.4)
        cursor.execute(status)
        assert cursor.fetchone() == ("READY",)
    connection.close()


def test_version_option_sets_what_the_cluster_reports(tmp_path: Path) -> None:
    with simulation(tmp_path, zones=1, servers_per_zone=1, hosts=False, extra=["--version", "3.1.4"]) as old:
        connection = connect(old)
        with connection.cursor() as cursor:
            cursor.execute("SELECT version()")
            assert cursor.fetchone() == ("5.7.25-OceanBase_CE-v3.1.4",)
        connection.close()


def test_the_simulator_starts_and_stops_quietly_and_keeps_its_keys(tmp_path: Path) -> None:
    """What a newcomer sees first: no traceback when it starts (readiness probes connect and leave) or
    stops, and a restart on the same --hosts-dir keeps the client key a credential was registered with."""
    base = f"127.{random.randint(64, 250)}.{random.randint(1, 254)}.2"
    command = [
        sys.executable, "-m", "obsim", "--zones", "1", "--servers-per-zone", "1", "--root-password", "Pw#1",
        "--base-address", base, "--ssh-port", "2222", "--hosts-dir", str(tmp_path / "hosts"),
    ]  # fmt: skip
    keys = []
    for _ in range(2):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline().removeprefix("READY "))
        for _probe in range(3):  # connect and leave before the handshake, as a port check does
            with socket.create_connection((base, ready["servers"][0]["sql_port"]), timeout=5):
                pass
        time.sleep(0.3)
        keys.append(Path(ready["ssh"]["private_key_file"]).read_text())
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0 and stderr == "", stderr
    assert keys[0] == keys[1]
