"""The simulator's contract, proven against a real OceanBase kernel (seekdb).

`SCRIPT` runs statement by statement on seekdb and on the simulator with the same inputs. After each one,
both must agree on the outcome (done, or the same error code) and on the state it leaves: the users and
their password hashes (`mysql.user`), their grants (`SHOW GRANTS`) and the values of the parameters the
script sets. The table covers every user, grant, password and parameter statement the product sends, with
their error cases and the password-hash forms of the grammar.

What seekdb cannot run (a single server: no cluster views, config server, jobs or resource manager) is in
`NOT_ON_SEEKDB`, each with the documentation that defines it; the test checks that seekdb still refuses
it (so the list stays honest) and that the simulator answers it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from activities import cluster_sql as sql
from tests.support.simulator import Simulation, simulation

HASH = "*F1E12C3BD7A9234A6103FFE3108372F9E8EB0CA5"  # PASSWORD('Secret-1')

# (statement, the error code both must give, or None)
# Parameters start from the same values on both.
SETUP = ["ALTER SYSTEM SET syslog_level = 'WDIAG'", "ALTER SYSTEM SET max_syslog_file_count = 4"]

SCRIPT: list[tuple[str, int | None]] = [
    # CREATE USER, in every form of the grammar.
    (sql.create_user("fid_a", "Secret-1").replace(" IF NOT EXISTS", ""), None),
    ("CREATE USER fid_a IDENTIFIED BY 'again'", 1396),  # it exists
    (sql.create_user("fid_a", "again"), None),  # IF NOT EXISTS: nothing changes
    (f"CREATE USER fid_b IDENTIFIED BY PASSWORD '{HASH}'", None),  # the hash is stored as it is
    (f"CREATE USER fid_c IDENTIFIED BY PASSWORD '{HASH.lower()}'", None),  # in any case
    (f"CREATE USER fid_d IDENTIFIED BY PASSWORD '{HASH[:-1]}'", 1827),  # 39 hex digits
    (f"CREATE USER fid_d IDENTIFIED BY PASSWORD '{HASH[1:]}A'", 1827),  # no '*'
    (f"CREATE USER fid_d IDENTIFIED BY PASSWORD '*G{HASH[2:]}'", 1827),  # not hex
    ("CREATE USER fid_d IDENTIFIED BY PASSWORD ''", 1827),
    ("CREATE USER fid_e", None),  # no password
    (sql.create_user("fid_q", 'it\'s "quoted" \\ and 密码'), None),
    # Passwords.
    (sql.alter_user_password("fid_a", "Other-2"), None),
    (f"ALTER USER fid_a IDENTIFIED BY PASSWORD '{HASH}'", 1064),  # not in OceanBase's grammar
    (f"ALTER USER fid_a IDENTIFIED WITH mysql_native_password AS '{HASH}'", None),  # hashed again
    ("ALTER USER fid_a IDENTIFIED WITH mysql_native_password BY 'Clear-4'", None),
    (f"SET PASSWORD FOR fid_a = '{HASH}'", None),  # hashed again, not restored
    ("SET PASSWORD FOR fid_a = PASSWORD('Secret-1')", None),
    (sql.alter_user_password("fid_nope", "x"), 1133),
    ("SET PASSWORD FOR fid_nope = PASSWORD('x')", 1133),
    # Grants.
    (sql.grant("SELECT", "*.*", "fid_a"), None),
    (sql.grant("SELECT", "oceanbase.*", "fid_a"), None),
    (sql.grant("SELECT, PROCESS", "*.*", "fid_b"), None),
    (sql.grant("ALL PRIVILEGES", "*.*", "fid_c"), None),
    ("GRANT SELECT ON *.* TO fid_e WITH GRANT OPTION", None),
    (sql.grant("SELECT", "*.*", "fid_nope"), 1045),  # OceanBase's answer for a missing user
    (sql.grant("BOGUS", "*.*", "fid_a"), 1149),
    ("REVOKE SELECT ON oceanbase.* FROM fid_a", None),
    ("REVOKE SELECT ON oceanbase.* FROM fid_a", 5133),  # not held
    ("REVOKE SELECT ON *.* FROM fid_nope", 1133),
    ("REVOKE ALL PRIVILEGES ON *.* FROM fid_c", None),
    ("SHOW GRANTS FOR fid_nope", 1133),
    # Parameters.
    ("ALTER SYSTEM SET fid_no_such_parameter = 'x'", 5099),
    ("ALTER SYSTEM SET syslog_level = 'INFO'", None),
    ("ALTER SYSTEM SET syslog_level = 'LOUD'", 4147),
    ("ALTER SYSTEM SET max_syslog_file_count = 7", None),
    (sql.set_parameter("max_syslog_file_count", "8"), None),
    ("ALTER SYSTEM SET max_syslog_file_count = 'abc'", 4147),
    ("ALTER SYSTEM SET max_syslog_file_count = -5", 4147),
    ("ALTER SYSTEM SET max_syslog_file_count = 9 SCOPE = BOTH", None),
    (sql.set_parameter("data_dir", "/elsewhere"), 4147),  # read-only
    # Tables and syntax.
    ("SELECT * FROM oceanbase.FID_NO_SUCH_TABLE", 1146),
    ("SELEC 1", 1064),
    (sql.user_exists("fid_a"), None),
    (sql.LOGIN_CHECK_SQL, None),
    # Drops.
    ("DROP USER fid_nope", 1396),
    (sql.drop_user("fid_nope"), None),  # IF EXISTS
    ("DROP USER fid_a, fid_b", None),
    (sql.drop_user("fid_c"), None),
    ("DROP USER fid_e, fid_q", None),
]

# Statements the product sends that seekdb cannot run, with what defines their behaviour instead.
DOCS = "OceanBase Database V4.x documentation"
SERVER = ("127.0.0.1", 2882)  # replaced by the simulator's own server
NOT_ON_SEEKDB: list[tuple[str, str]] = [
    (sql.parameter("obconfig_url"), f"{DOCS}, views: GV$OB_PARAMETERS"),
    (sql.SERVERS_SQL, f"{DOCS}, views: DBA_OB_SERVERS"),
    (sql.ZONES_SQL, f"{DOCS}, views: DBA_OB_ZONES"),
    (sql.RS_LIST_SQL, f"{DOCS}, views: CDB_OB_LS_LOCATIONS"),
    (sql.TENANTS_SQL, f"{DOCS}, views: DBA_OB_TENANTS"),
    (sql.UNIT_CONFIGS_SQL, f"{DOCS}, views: DBA_OB_UNIT_CONFIGS"),
    (sql.POOLS_SQL, f"{DOCS}, views: DBA_OB_RESOURCE_POOLS"),
    (sql.UNITS_SQL, f"{DOCS}, views: DBA_OB_UNITS"),
    (sql.io_calibration_status(*SERVER), f"{DOCS}, views: GV$OB_IO_CALIBRATION_STATUS"),
    (sql.set_parameter("obconfig_url", "http://127.0.0.1:1/services"), f"{DOCS}, parameters: obconfig_url"),
    (sql.RELOAD_SERVER, f"{DOCS}, SQL reference: ALTER SYSTEM (RELOAD SERVER); obd runs it after obconfig_url"),
    (sql.run_io_calibration(*SERVER), f"{DOCS}, SQL reference: ALTER SYSTEM RUN JOB 'io_calibration'"),
    (sql.create_plan("FID_PLAN"), f"{DOCS}, PL reference: DBMS_RESOURCE_MANAGER.CREATE_PLAN"),
    (sql.ACTIVE_PLAN_SQL, f"{DOCS}, system variables: resource_manager_plan"),
    (sql.enable_plan(""), f"{DOCS}, system variables: resource_manager_plan"),
]


def connect(host: str, port: int, password: str) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host=host, port=port, user="root@sys", password=password, autocommit=True)


def outcome(connection: pymysql.connections.Connection[Any], statement: str) -> int | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            cursor.fetchall()
        return None
    except pymysql.err.MySQLError as exc:
        return int(exc.args[0])


def state(connection: pymysql.connections.Connection[Any]) -> dict[str, Any]:
    """Users with their hashes and grants, and the parameters the script sets."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT user, host, password FROM mysql.user WHERE user LIKE 'fid%' ORDER BY user")
        users = {user: {"host": host, "password": password} for user, host, password in cursor.fetchall()}
        for user, entry in users.items():
            cursor.execute(f"SHOW GRANTS FOR {user}")
            entry["grants"] = [line for (line,) in cursor.fetchall()]
        parameters = {}
        for name in ("syslog_level", "max_syslog_file_count"):
            cursor.execute(f"SHOW PARAMETERS LIKE '{name}'")
            column = [d[0].lower() for d in cursor.description or []].index("value")
            parameters[name] = sorted({row[column] for row in cursor.fetchall()})
    return {"users": users, "parameters": parameters}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    with simulation(tmp_path_factory.mktemp("fidelity"), zones=1, servers_per_zone=1, hosts=False) as running:
        yield running


def test_the_simulator_answers_as_the_kernel_does(seekdb: tuple[str, int], sim: Simulation) -> None:
    kernel = connect(*seekdb, "")
    simulated = connect(sim.address, sim.sql_port, sim.root_password)
    differences = []
    try:
        for statement in SETUP:
            assert (outcome(kernel, statement), outcome(simulated, statement)) == (None, None), statement
        for statement, expected in SCRIPT:
            got = (outcome(kernel, statement), outcome(simulated, statement))
            if got != (expected, expected):
                differences.append(f"{statement}: expected {expected}, seekdb {got[0]}, simulator {got[1]}")
                continue
            kernel_state, simulated_state = state(kernel), state(simulated)
            if kernel_state != simulated_state:
                differences.append(f"after {statement}: seekdb {kernel_state} != simulator {simulated_state}")
    finally:
        for connection in (kernel, simulated):
            for user in ("fid_a", "fid_b", "fid_c", "fid_d", "fid_e", "fid_q"):
                outcome(connection, sql.drop_user(user))
            connection.close()
    assert differences == []


def test_what_seekdb_cannot_run_is_listed_with_its_source(seekdb: tuple[str, int], sim: Simulation) -> None:
    kernel = connect(*seekdb, "")
    simulated = connect(sim.address, sim.sql_port, sim.root_password)
    try:
        runs_on_seekdb = [statement for statement, _ in NOT_ON_SEEKDB if outcome(kernel, statement) is None]
        assert runs_on_seekdb == [], "seekdb runs these now: move them into SCRIPT"
        server = sim.ready["servers"][0]
        ours = (server["address"], server["rpc_port"])
        failing_in_simulator = {}
        for statement, _ in NOT_ON_SEEKDB:
            statement = statement.replace(f"'{SERVER[0]}:{SERVER[1]}'", f"'{ours[0]}:{ours[1]}'")
            statement = statement.replace(
                f"'{SERVER[0]}' AND SVR_PORT = {SERVER[1]}", f"'{ours[0]}' AND SVR_PORT = {ours[1]}"
            )
            if (code := outcome(simulated, statement)) is not None:
                failing_in_simulator[statement] = code
        assert failing_in_simulator == {}
    finally:
        outcome(simulated, sql.delete_plan("FID_PLAN"))
        kernel.close()
        simulated.close()


@pytest.mark.unit
def test_the_readme_lists_what_is_proven_where() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "testing.md").read_text()
    assert "### What the simulator proves" in text
    for _, source in NOT_ON_SEEKDB:
        assert source.split(": ", 1)[1].split(" (")[0].split(";")[0] in text, source
