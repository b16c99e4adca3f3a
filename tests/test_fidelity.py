"""The simulator's contract, proven against a real OceanBase kernel (seekdb).

`SCRIPT` runs statement by statement on seekdb and on the simulator with the same inputs, on one session
each. After each one, both must agree on the outcome (done, or the same error code), on the answer (its
columns, and its rows in any order) and on the state it leaves: the accounts (user and host) and their
password hashes (`mysql.user`), their grants (`SHOW GRANTS`) and the values of the parameters the script
sets. The table covers every user, grant, password and parameter statement the product sends, with their
error cases and the password-hash forms of the grammar; how account names compare and what they may be;
accounts for one host next to the default-host account; and the session and server variables that clients
read at login, with the sql_mode that decides how string literals are read.

Where seekdb answers as seekdb rather than as OceanBase (its product name in `@@version_comment`, its own
databases in root's grants), `SHAPES` compares the form of the answer instead. What seekdb cannot run (a
single server: no cluster views, config server, jobs or resource manager) is in `NOT_ON_SEEKDB`, each with
the documentation that defines it; the test checks that seekdb still refuses it (so the list stays honest)
and that the simulator answers it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from activities import cluster_sql as sql
from activities.ob_sys_client import ObSysClient
from contracts.topology import ClusterEndpoint
from tests.support.simulator import Simulation, simulation

HASH = "*F1E12C3BD7A9234A6103FFE3108372F9E8EB0CA5"  # PASSWORD('Secret-1')
LONGEST = "fid_" + "l" * 60  # 64 bytes: the longest user name
TOO_LONG = LONGEST + "l"
LONGEST_WIDE = "fid_" + "é" * 30  # 64 bytes in 34 characters: the limit counts bytes
# What a client's session starts with; the login-time variables read below.
DEFAULT_SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_AUTO_CREATE_USER"
CONNECTOR_J = (
    # What MySQL Connector/J (OCP's driver) reads right after it logs in.
    "/* mysql-connector-java-5.1.49 ( Revision: ad86f36e100e104cd926c6b81c8cab9565750116 ) */SELECT  "
    "@@session.auto_increment_increment AS auto_increment_increment, @@character_set_client AS "
    "character_set_client, @@character_set_connection AS character_set_connection, @@character_set_results AS "
    "character_set_results, @@character_set_server AS character_set_server, @@collation_server AS "
    "collation_server, @@collation_connection AS collation_connection, @@init_connect AS init_connect, "
    "@@interactive_timeout AS interactive_timeout, @@license AS license, @@lower_case_table_names AS "
    "lower_case_table_names, @@max_allowed_packet AS max_allowed_packet, @@net_buffer_length AS "
    "net_buffer_length, @@net_write_timeout AS net_write_timeout, @@performance_schema AS performance_schema, "
    "@@query_cache_size AS query_cache_size, @@query_cache_type AS query_cache_type, @@sql_mode AS sql_mode, "
    "@@system_time_zone AS system_time_zone, @@time_zone AS time_zone, @@tx_isolation AS transaction_isolation, "
    "@@wait_timeout AS wait_timeout"
)

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
    ("REVOKE INSERT ON oceanbase.* FROM fid_a", None),  # not held, but fid_a holds something there
    ("REVOKE SELECT ON oceanbase.* FROM fid_a", None),
    ("REVOKE SELECT ON oceanbase.* FROM fid_a", 5133),  # nothing held there any more
    ("REVOKE ALL PRIVILEGES ON oceanbase.* FROM fid_e", 5133),
    ("REVOKE PROCESS ON *.* FROM fid_a", None),  # global privileges: never 5133
    ("REVOKE SELECT ON *.* FROM fid_nope", 1133),
    ("REVOKE ALL PRIVILEGES ON *.* FROM fid_c", None),
    ("SHOW GRANTS FOR fid_nope", 1133),
    ("SHOW GRANTS FOR fid_e", None),
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
    (sql.user_password_hash("fid_a"), None),
    (sql.LOGIN_CHECK_SQL, None),
    ("SELECT CURRENT_USER() AS ME", None),
    # Names are case-sensitive: three accounts, each its own.
    ("CREATE USER fid_case IDENTIFIED BY 'lower-1'", None),
    ("CREATE USER FID_CASE IDENTIFIED BY 'upper-2'", None),
    ("CREATE USER Fid_Case", None),
    ("CREATE USER FID_CASE", 1396),
    ("GRANT SELECT ON *.* TO FID_CASE", None),
    ("ALTER USER Fid_Case IDENTIFIED BY 'mixed-3'", None),
    ("SHOW GRANTS FOR fid_CASE", 1133),
    ("ALTER USER fid_CASE IDENTIFIED BY 'x'", 1133),
    ("GRANT SELECT ON *.* TO fid_CASE", 1045),
    # …but mysql.user compares them in utf8mb4_general_ci: case, accents and trailing spaces do not count.
    ("SELECT user FROM mysql.user WHERE user = 'fid_case'", None),
    ("SELECT user FROM mysql.user WHERE user = 'FID_CASE '", None),
    ("SELECT user FROM mysql.user WHERE user LIKE 'FID_case'", None),
    ("SELECT user FROM mysql.user WHERE user IN ('fid_case')", None),
    ("SELECT COUNT(*) AS N FROM mysql.user WHERE user = 'fid_case'", None),
    ("SELECT user, password FROM mysql.user WHERE user = 'fid_case' ORDER BY password", None),
    # Exactly one of them: BINARY compares bytes; utf8mb4_bin compares case but still ignores trailing spaces.
    ("SELECT user FROM mysql.user WHERE BINARY user = 'fid_case'", None),
    ("SELECT user FROM mysql.user WHERE user = BINARY 'FID_CASE'", None),
    ("SELECT user FROM mysql.user WHERE user = BINARY 'fid_case '", None),
    ("SELECT user FROM mysql.user WHERE user = 'Fid_Case' COLLATE utf8mb4_bin", None),
    ("SELECT user FROM mysql.user WHERE user = 'Fid_Case ' COLLATE utf8mb4_bin", None),
    (sql.user_exists("fid_case"), None),  # the product's lookups: exactly the account named
    (sql.user_exists("FID_CASE"), None),
    (sql.user_exists("fid_Case"), None),
    (sql.user_password_hash("FID_CASE"), None),
    (sql.user_password_hash("Fid_Case"), None),
    ("DROP USER fid_CASE", 1396),
    ("DROP USER FID_CASE", None),
    ("CREATE USER 'fid_é' IDENTIFIED BY 'accent'", None),
    ("CREATE USER fid_e2", None),
    ("SELECT user FROM mysql.user WHERE user = 'fid_e'", None),  # finds fid_é
    (sql.user_exists("fid_e"), None),
    # How a name may be written, and how long it may be (64 bytes).
    ("CREATE USER `fid_bq`", None),
    ('CREATE USER "fid_dq"', None),
    ("CREATE USER 'fid sp' IDENTIFIED BY 'space'", None),
    ("CREATE USER fid_at@'%'", None),
    ("CREATE USER ''", 1396),
    (f"CREATE USER {LONGEST} IDENTIFIED BY 'long'", None),
    (f"CREATE USER '{LONGEST_WIDE}'", None),
    (f"CREATE USER {TOO_LONG}", 1470),
    (f"CREATE USER IF NOT EXISTS {TOO_LONG} IDENTIFIED BY 'x'", 1470),
    (f"CREATE USER '{LONGEST_WIDE}x'", 1470),
    (f"GRANT SELECT ON *.* TO {TOO_LONG}", 1470),
    (f"REVOKE SELECT ON *.* FROM {TOO_LONG}", 1470),
    (f"ALTER USER {TOO_LONG} IDENTIFIED BY 'x'", 1133),
    (f"SHOW GRANTS FOR {TOO_LONG}", 1133),
    (f"DROP USER {TOO_LONG}", 1396),
    (f"DROP USER IF EXISTS {TOO_LONG}", None),
    (f"GRANT SELECT ON oceanbase.* TO {LONGEST}", None),
    # An account for some hosts is not the default-host account of the same name.
    ("CREATE USER 'fid_h'@'10.0.0.%' IDENTIFIED BY 'host-1'", None),
    ("SHOW GRANTS FOR fid_h", 1133),
    ("SHOW GRANTS FOR 'fid_h'@'%'", 1133),
    ("SHOW GRANTS FOR 'fid_h'@'10.0.0.%'", None),
    ("ALTER USER fid_h IDENTIFIED BY 'x'", 1133),
    ("ALTER USER 'fid_h'@'10.0.0.%' IDENTIFIED BY 'host-2'", None),
    ("GRANT SELECT ON *.* TO fid_h", 1045),
    ("GRANT SELECT ON oceanbase.* TO 'fid_h'@'10.0.0.%'", None),
    ("DROP USER fid_h", 1396),
    (sql.user_exists("fid_h"), None),
    (sql.create_user("fid_h", "default-1"), None),  # another account
    (sql.user_exists("fid_h"), None),
    (sql.user_password_hash("fid_h"), None),
    ("SET PASSWORD FOR 'fid_h'@'10.0.0.%' = PASSWORD('host-3')", None),
    ("REVOKE SELECT ON oceanbase.* FROM fid_h", 5133),
    ("REVOKE SELECT ON oceanbase.* FROM 'fid_h'@'10.0.0.%'", None),
    ("CREATE USER 'fid_h'@'localhost'", None),
    ("CREATE USER 'fid_h'@LOCALHOST", None),  # hosts are case-sensitive too
    ("DROP USER 'fid_h'@'Localhost'", 1396),
    ("SELECT user, host FROM mysql.user WHERE user = 'fid_h' AND host = 'localhost'", None),
    ("DROP USER 'fid_h'@'10.0.0.%', fid_h@localhost", None),
    # Login-time variables, as clients read them.
    ("SELECT @@sql_mode, @@session.sql_mode, @@global.sql_mode, @@local.sql_mode, @@SQL_MODE AS m", None),
    (CONNECTOR_J, None),
    (
        "SELECT @@autocommit, @@tx_isolation, @@transaction_isolation, @@tx_read_only, @@transaction_read_only, "
        "@@lower_case_table_names, @@character_set_database, @@collation_database, @@net_read_timeout",
        None,
    ),
    (
        "SELECT @@ob_query_timeout, @@ob_trx_timeout, @@ob_trx_idle_timeout, @@ob_trx_lock_timeout, "
        "@@ob_read_consistency, @@ob_tcp_invited_nodes, @@version_compile_os, @@protocol_version",
        None,
    ),
    ("SELECT @@ob_query_timeout + 1", None),
    ("SHOW VARIABLES LIKE 'sql_mode'", None),
    ("SHOW VARIABLES LIKE 'SQL_MODE'", None),
    ("SHOW VARIABLES LIKE 'lower_case%'", None),
    ("SHOW VARIABLES LIKE 'max_allowed%'", None),
    ("SHOW SESSION VARIABLES LIKE 'autocommit'", None),
    ("SHOW GLOBAL VARIABLES LIKE 'tx_isolation'", None),
    ("SHOW VARIABLES WHERE Variable_name = 'sql_mode'", None),
    ("SELECT @@session.version_comment", 1238),  # global only
    ("SELECT @@session.lower_case_table_names", 1238),
    ("SELECT @@fid_no_such_variable", 1193),
    ("SET fid_no_such_variable = 1", 1193),
    ("SET SESSION version_comment = 'x'", 1238),  # read-only
    ("SET GLOBAL lower_case_table_names = 0", 1238),
    ("SET SESSION init_connect = 'x'", 1229),
    ("SET SESSION max_allowed_packet = 1024", 1621),
    ("SET SESSION autocommit = 0", None),
    ("SELECT @@autocommit", None),
    ("SET autocommit = ON", None),
    ("SET SESSION autocommit = 'OFF'", None),
    ("SHOW VARIABLES LIKE 'autocommit'", None),
    ("SET SESSION autocommit = 5", 1231),
    ("SET autocommit = 1", None),
    ("SET SESSION tx_isolation = 'SERIALIZABLE'", None),
    ("SELECT @@tx_isolation, @@transaction_isolation", None),
    ("SET SESSION transaction_isolation = 'read-committed'", None),
    ("SET SESSION tx_isolation = 'FID_BOGUS'", 1231),
    ("SET SESSION ob_query_timeout = 5000000", None),
    ("SELECT @@ob_query_timeout, @@global.ob_query_timeout", None),
    ("SET SESSION ob_query_timeout = 'abc'", 1232),
    ("SET @@session.ob_query_timeout = DEFAULT", None),
    ("SELECT @@ob_query_timeout", None),
    # sql_mode: what it takes, how it lists it, and NO_BACKSLASH_ESCAPES, which changes how literals read.
    ("SET SESSION sql_mode = 'FID_BOGUS'", 1231),
    ("SET SESSION sql_mode = 'STRICT_ALL_TABLES, NO_BACKSLASH_ESCAPES'", 1231),  # no spaces
    ("SET SESSION sql_mode = 'ORACLE'", 1231),
    ("SET SESSION sql_mode = 'NOT_USED'", 1231),
    *[
        (statement, None)
        for mode in ("TRADITIONAL", "ANSI", "POSTGRESQL", "MSSQL", "DB2,MAXDB", "MYSQL40", "MYSQL323")
        for statement in (f"SET SESSION sql_mode = '{mode}'", "SELECT @@sql_mode")
    ],
    ("SET sql_mode = 'strict_all_tables,,STRICT_ALL_TABLES'", None),
    ("SELECT @@sql_mode", None),
    ("SET sql_mode = 7", None),  # a bit mask
    ("SELECT @@sql_mode", None),
    ("SET SESSION sql_mode = NULL", None),
    ("SELECT @@sql_mode", None),
    ("SET autocommit = 1, sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES'", None),
    ("SELECT @@sql_mode", None),
    ("SELECT 'a\\b' AS V", None),  # a backslash is a character
    ("SELECT 'a\\'b' AS V", 1064),  # …so this literal ends after it
    ("SELECT 'it''s' AS V", None),
    (sql.create_user("fid_nbe", "back\\slash"), None),  # quote() doubles the backslash: both are kept
    (sql.create_user("fid_nbe2", "it's"), 1064),
    ("SET @@local.sql_mode = DEFAULT", None),
    ("SELECT @@sql_mode", None),
    ("SELECT 'a\\'b' AS V, 'a\\nb' AS W, 'a\\%b' AS X, 'a\\qb' AS Y", None),
    (f"SET GLOBAL sql_mode = '{DEFAULT_SQL_MODE},NO_BACKSLASH_ESCAPES'", None),
    ("SELECT @@global.sql_mode, @@session.sql_mode", None),  # a session keeps what it started with
    ("SET GLOBAL sql_mode = DEFAULT", None),
    ("SELECT @@global.sql_mode", None),
    # Drops.
    ("DROP USER fid_nope", 1396),
    (sql.drop_user("fid_nope"), None),  # IF EXISTS
    ("DROP USER fid_a, fid_b", None),
    (sql.drop_user("fid_c"), None),
    ("DROP USER fid_e, fid_q", None),
]

# Where seekdb answers as seekdb, the form of the answer (every row's values joined by " | ", the rows by
# newlines) on both; {ob_version} is each server's `ob_version()`.
COMMENT = r"OceanBase(?:_CE)? {ob_version}(?: seekdb)? \(r[^()]+\) \(Built [^()]+\)"
SHAPES: list[tuple[str, str]] = [
    # The mysql and obclient command lines; OCP's agent reads the version as the second word.
    ("select @@version_comment limit 1", COMMENT),
    ("SHOW VARIABLES LIKE 'version_comment'", r"version_comment \| " + COMMENT),
    # seekdb puts its own version after -v; OceanBase puts the kernel's.
    ("SELECT @@version, version()", r"(5\.7\.25-OceanBase(?:_CE-v{ob_version}| seekdb-v[\d.]+)) \| \1"),
    # seekdb's root also holds its own databases; the simulator has none.
    (
        "SHOW GRANTS FOR root",
        r"GRANT ALL PRIVILEGES ON \*\.\* TO 'root' WITH GRANT OPTION"
        r"(?:\nGRANT ALL PRIVILEGES ON `[\w$]+`\.\* TO 'root')*",
    ),
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
    (
        sql.RESOURCE_MANAGER_SQL.format(plan="'FID_PLAN'", group="'FID_GROUP'", user="'fid_user'"),
        f"{DOCS}, system variables: resource_manager_plan (and the DBA_RSRC_* views)",
    ),
    (sql.enable_plan(""), f"{DOCS}, system variables: resource_manager_plan"),
]

# Passwords that break a statement if the session reads literals in another sql_mode than they were quoted for.
HOSTILE = ["it's", "back\\slash\\", "x'; DROP USER root; --", "`backtick` \\' mixed", "ünïcødé-密码-🙂"]

Answer = tuple[int | None, list[str], list[str]]


def connect(host: str, port: int, password: str) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host=host, port=port, user="root@sys", password=password, autocommit=True)


def answer(connection: pymysql.connections.Connection[Any], statement: str) -> Answer:
    """(the error code or None, the columns, the rows in a stable order)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            rows = cursor.fetchall()
            columns = [d[0] for d in cursor.description or []]
        return None, columns, sorted(repr(tuple(row)) for row in rows)
    except pymysql.err.MySQLError as exc:
        return int(exc.args[0]), [], []


def outcome(connection: pymysql.connections.Connection[Any], statement: str) -> int | None:
    return answer(connection, statement)[0]


def accounts(connection: pymysql.connections.Connection[Any]) -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT user, host FROM mysql.user WHERE user LIKE 'fid%'")
        return [(str(user), str(host)) for user, host in cursor.fetchall()]


def account(user: str, host: str) -> str:
    return f"{sql.quote(user)}@{sql.quote(host)}"


def state(connection: pymysql.connections.Connection[Any]) -> dict[str, Any]:
    """Accounts with their hashes and grants, and the parameters the script sets."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT user, host, password FROM mysql.user WHERE user LIKE 'fid%'")
        users = {account(user, host): {"password": password} for user, host, password in cursor.fetchall()}
        for name, entry in users.items():
            cursor.execute(f"SHOW GRANTS FOR {name}")
            entry["grants"] = [line for (line,) in cursor.fetchall()]
        parameters = {}
        for parameter in ("syslog_level", "max_syslog_file_count"):
            cursor.execute(f"SHOW PARAMETERS LIKE '{parameter}'")
            column = [d[0].lower() for d in cursor.description or []].index("value")
            parameters[parameter] = sorted({row[column] for row in cursor.fetchall()})
    return {"users": users, "parameters": parameters}


def clean(connection: pymysql.connections.Connection[Any]) -> None:
    for user, host in accounts(connection):
        outcome(connection, f"DROP USER {account(user, host)}")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    with simulation(tmp_path_factory.mktemp("fidelity"), zones=1, servers_per_zone=1, hosts=False) as running:
        yield running


@pytest.fixture
def both(seekdb: tuple[str, int], sim: Simulation) -> Iterator[dict[str, pymysql.connections.Connection[Any]]]:
    """A root session on each; the script's accounts and global sql_mode are put back afterwards."""
    sessions = {"seekdb": connect(*seekdb, ""), "simulator": connect(sim.address, sim.sql_port, sim.root_password)}
    try:
        yield sessions
    finally:
        for connection in sessions.values():
            outcome(connection, "SET GLOBAL sql_mode = DEFAULT")
            outcome(connection, "SET SESSION sql_mode = DEFAULT")
            clean(connection)
            connection.close()


def test_the_simulator_answers_as_the_kernel_does(both: dict[str, pymysql.connections.Connection[Any]]) -> None:
    kernel, simulated = both["seekdb"], both["simulator"]
    differences = []
    for statement in SETUP:
        assert (outcome(kernel, statement), outcome(simulated, statement)) == (None, None), statement
    for statement, expected in SCRIPT:
        got, ours = answer(kernel, statement), answer(simulated, statement)
        if (got[0], ours[0]) != (expected, expected):
            differences.append(f"{statement}: expected {expected}, seekdb {got[0]}, simulator {ours[0]}")
            continue
        if got != ours:
            differences.append(f"{statement}: seekdb answers {got[1:]}, the simulator {ours[1:]}")
        kernel_state, simulated_state = state(kernel), state(simulated)
        if kernel_state != simulated_state:
            differences.append(f"after {statement}: seekdb {kernel_state} != simulator {simulated_state}")
    assert differences == []


def test_what_seekdb_answers_as_seekdb_has_the_same_form(both: dict[str, pymysql.connections.Connection[Any]]) -> None:
    wrong = {}
    for side, connection in both.items():
        with connection.cursor() as cursor:
            cursor.execute(sql.OB_VERSION_SQL)
            (version,) = cursor.fetchone() or ("",)
        for statement, shape in SHAPES:
            with connection.cursor() as cursor:
                cursor.execute(statement)
                text = "\n".join(" | ".join(str(value) for value in row) for row in cursor.fetchall())
            if not re.fullmatch(shape.replace("{ob_version}", re.escape(str(version))), text):
                wrong[f"{side}: {statement}"] = text
    assert wrong == {}


@pytest.mark.parametrize("side", ["seekdb", "simulator"])
def test_the_product_reads_its_literals_whatever_the_cluster_sql_mode(
    side: str, both: dict[str, pymysql.connections.Connection[Any]], seekdb: tuple[str, int], sim: Simulation
) -> None:
    """A cluster whose sql_mode has NO_BACKSLASH_ESCAPES: a plain session cannot read a quoted password (the
    literal ends at the backslash), the product's session takes the mode out at connect and reads every one."""
    root = both[side]
    host, port, password = (*seekdb, "") if side == "seekdb" else (sim.address, sim.sql_port, sim.root_password)
    assert outcome(root, f"SET GLOBAL sql_mode = '{DEFAULT_SQL_MODE},NO_BACKSLASH_ESCAPES'") is None
    plain = connect(host, port, password)
    try:
        assert answer(plain, "SELECT @@session.sql_mode")[2] == [repr((f"NO_BACKSLASH_ESCAPES,{DEFAULT_SQL_MODE}",))]
        assert outcome(plain, f"SELECT {sql.quote(HOSTILE[0])} AS V") == 1064
    finally:
        plain.close()
    endpoint = ClusterEndpoint(address=host, port=port, root_sys_password=password)
    with ObSysClient(endpoint) as client:
        assert client.query("SELECT @@session.sql_mode AS MODE") == [{"MODE": DEFAULT_SQL_MODE}]
        assert [client.query(f"SELECT {sql.quote(p)} AS V")[0]["V"] for p in HOSTILE] == HOSTILE


def test_what_seekdb_cannot_run_is_listed_with_its_source(
    both: dict[str, pymysql.connections.Connection[Any]], sim: Simulation
) -> None:
    kernel, simulated = both["seekdb"], both["simulator"]
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


@pytest.mark.unit
def test_the_readme_lists_what_is_proven_where() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "testing.md").read_text()
    assert "### What the simulator proves" in text
    for _, source in NOT_ON_SEEKDB:
        assert source.split(": ", 1)[1].split(" (")[0].split(";")[0] in text, source
