"""The simulated cluster's state and its SQL: what an OceanBase 4.x sys tenant answers.

State lives in one SQLite database. SELECTs on OceanBase's views run on SQLite views of the same
names and columns; everything else (users, grants, ALTER SYSTEM, the resource manager) is parsed here
and changes the state. Statements it does not know fail as OceanBase fails them. Each session's system
variables (and the sql_mode its string literals are read in) are in `obsim.session`.

Accounts are a user name and a host, both compared exactly (`x` and `X` are two accounts, and so are
`'u'@'%'` and `'u'@'10.0.0.%'`), while mysql.user's columns compare in utf8mb4_general_ci as OceanBase's
do: `WHERE user = 'x'` finds `X` too, unless the query says BINARY or COLLATE utf8mb4_bin.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mysql_mimic import context as mimic_context

from obsim.session import (
    DEFAULT,
    Scope,
    SetValue,
    SystemVariables,
    UnterminatedLiteral,
    Value,
    VariableError,
    escaped,
    local_utc_offset,
    rewrite_literals,
    sqlite_literal,
    unquote,
)

# OceanBase's MySQL-mode error codes and messages.
ER_PARSE = 1064
ER_NO_SUCH_TABLE = 1146
ER_ACCESS_DENIED = 1045
ER_CANNOT_USER = 1396
ER_DUP_ENTRY = 1062
ER_NO_SUCH_GRANT = 1141
ER_SYS_CONFIG_UNKNOWN = 5099
ER_NOT_SUPPORTED = 1235
ER_SP_DOES_NOT_EXIST = 1305
ER_WRONG_ARGUMENTS = 1210
ER_NO_SUCH_USER_ROW = 1133  # ALTER USER, SET PASSWORD, REVOKE and SHOW GRANTS for a user that does not exist
ER_PRIVILEGE_TYPE = 1149  # an unknown privilege in GRANT
ER_PASSWORD_FORMAT = 1827  # IDENTIFIED BY PASSWORD with a string that is not '*' and 40 hex digits
ER_INVALID_CONFIG = 4147  # ALTER SYSTEM SET with a value the parameter does not take
ER_NO_SUCH_GRANT_DEFINED = 5133  # REVOKE on a database or table the account holds nothing on
ER_WRONG_STRING_LENGTH = 1470  # a user name longer than 64 bytes in CREATE USER, GRANT and REVOKE

USER_NAME_BYTES = 64

KNOWN_PARAMETERS: dict[str, str] = {
    "cluster": "",
    "cluster_id": "",
    "obconfig_url": "",
    "rootservice_list": "",
    "data_dir": "/home/admin/oceanbase/store",
    "redo_dir": "/home/admin/oceanbase/store/redo",
    "memory_limit": "8G",
    "system_memory": "1G",
    "cpu_count": "4",
    "datafile_size": "20G",
    "log_disk_size": "20G",
    "enable_syslog_recycle": "True",
    "max_syslog_file_count": "4",
    "syslog_level": "WDIAG",
    "enable_perf_event": "True",
    "enable_sql_audit": "True",
    "ob_enable_prepared_statement": "True",
    "server_permanent_offline_time": "3600s",
    "min_observer_version": "",
}

_SCHEMA = """
CREATE TABLE servers (svr_ip TEXT, svr_port INTEGER, sql_port INTEGER, id INTEGER, zone TEXT,
    with_rootserver TEXT, status TEXT, start_service_time TEXT, stop_time TEXT,
    block_migrate_in_time TEXT, build_version TEXT, PRIMARY KEY (svr_ip, svr_port));
CREATE TABLE zones (zone TEXT PRIMARY KEY, status TEXT, region TEXT, idc TEXT, type TEXT);
CREATE TABLE tenants (tenant_id INTEGER PRIMARY KEY, tenant_name TEXT, tenant_type TEXT,
    primary_zone TEXT, locality TEXT, compatibility_mode TEXT, status TEXT, tenant_role TEXT);
CREATE TABLE unit_configs (unit_config_id INTEGER PRIMARY KEY, name TEXT, max_cpu REAL, min_cpu REAL,
    memory_size INTEGER, log_disk_size INTEGER, max_iops INTEGER, min_iops INTEGER, iops_weight INTEGER);
CREATE TABLE resource_pools (resource_pool_id INTEGER PRIMARY KEY, name TEXT, unit_count INTEGER,
    unit_config_id INTEGER, zone_list TEXT, tenant_id INTEGER);
CREATE TABLE units (unit_id INTEGER PRIMARY KEY, tenant_id INTEGER, status TEXT, resource_pool_id INTEGER,
    zone TEXT, svr_ip TEXT, svr_port INTEGER, unit_config_id INTEGER);
CREATE TABLE parameters (name TEXT PRIMARY KEY, value TEXT, scope TEXT);
CREATE TABLE users (user TEXT, host TEXT, auth_string TEXT, PRIMARY KEY (user, host));
CREATE TABLE grants (user TEXT, host TEXT, privilege TEXT, object TEXT, PRIMARY KEY (user, host, privilege, object));
CREATE TABLE io_calibration (svr_ip TEXT, svr_port INTEGER, storage_name TEXT, started REAL,
    start_time TEXT, PRIMARY KEY (svr_ip, svr_port));
CREATE TABLE rsrc_plans (plan TEXT PRIMARY KEY, comments TEXT);
CREATE TABLE rsrc_consumer_groups (consumer_group TEXT PRIMARY KEY, comments TEXT);
CREATE TABLE rsrc_plan_directives (plan TEXT, group_or_subplan TEXT, comments TEXT, mgmt_p1 INTEGER,
    utilization_limit INTEGER, PRIMARY KEY (plan, group_or_subplan));
CREATE TABLE rsrc_group_mappings (attribute TEXT, value TEXT, consumer_group TEXT,
    PRIMARY KEY (attribute, value));
CREATE TABLE statements (seq INTEGER PRIMARY KEY AUTOINCREMENT, server TEXT, user TEXT, sql TEXT,
    error INTEGER, at TEXT, endpoint TEXT, login TEXT);
CREATE TABLE logins (seq INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT, login TEXT, error INTEGER, at TEXT);

CREATE VIEW DBA_OB_SERVERS AS SELECT svr_ip AS SVR_IP, svr_port AS SVR_PORT, id AS ID, zone AS ZONE,
    sql_port AS SQL_PORT, with_rootserver AS WITH_ROOTSERVER, status AS STATUS,
    start_service_time AS START_SERVICE_TIME, stop_time AS STOP_TIME,
    block_migrate_in_time AS BLOCK_MIGRATE_IN_TIME, build_version AS BUILD_VERSION FROM servers;
CREATE VIEW GV$OB_SERVERS AS SELECT svr_ip AS SVR_IP, svr_port AS SVR_PORT, zone AS ZONE,
    sql_port AS SQL_PORT, 4 AS CPU_CAPACITY, 8589934592 AS MEM_CAPACITY, 'ACTIVE' AS STATUS
    FROM servers WHERE stop_time IS NULL;
CREATE VIEW DBA_OB_ZONES AS SELECT zone AS ZONE, status AS STATUS, region AS REGION, idc AS IDC,
    type AS TYPE FROM zones;
-- TENANT_ROLE as OceanBase 4.x defines the view: the sys tenant and the meta tenants (odd ids) are PRIMARY
-- whatever the cluster's role; only user tenants report STANDBY on a standby cluster.
CREATE VIEW DBA_OB_TENANTS AS SELECT tenant_id AS TENANT_ID, tenant_name AS TENANT_NAME,
    tenant_type AS TENANT_TYPE, primary_zone AS PRIMARY_ZONE, locality AS LOCALITY,
    compatibility_mode AS COMPATIBILITY_MODE, status AS STATUS,
    CASE WHEN tenant_id = 1 OR tenant_id % 2 = 1 THEN 'PRIMARY' ELSE tenant_role END AS TENANT_ROLE FROM tenants;
CREATE VIEW DBA_OB_UNIT_CONFIGS AS SELECT unit_config_id AS UNIT_CONFIG_ID, name AS NAME,
    max_cpu AS MAX_CPU, min_cpu AS MIN_CPU, memory_size AS MEMORY_SIZE, log_disk_size AS LOG_DISK_SIZE,
    max_iops AS MAX_IOPS, min_iops AS MIN_IOPS, iops_weight AS IOPS_WEIGHT FROM unit_configs;
CREATE VIEW DBA_OB_RESOURCE_POOLS AS SELECT resource_pool_id AS RESOURCE_POOL_ID, name AS NAME,
    unit_count AS UNIT_COUNT, unit_config_id AS UNIT_CONFIG_ID, zone_list AS ZONE_LIST,
    tenant_id AS TENANT_ID FROM resource_pools;
CREATE VIEW DBA_OB_UNITS AS SELECT u.unit_id AS UNIT_ID, u.tenant_id AS TENANT_ID, u.status AS STATUS,
    u.resource_pool_id AS RESOURCE_POOL_ID, u.zone AS ZONE, u.svr_ip AS SVR_IP, u.svr_port AS SVR_PORT,
    u.unit_config_id AS UNIT_CONFIG_ID, c.max_cpu AS MAX_CPU, c.min_cpu AS MIN_CPU,
    c.memory_size AS MEMORY_SIZE, c.log_disk_size AS LOG_DISK_SIZE
    FROM units u JOIN unit_configs c ON c.unit_config_id = u.unit_config_id;
CREATE VIEW GV$OB_PARAMETERS AS SELECT s.svr_ip AS SVR_IP, s.svr_port AS SVR_PORT, s.zone AS ZONE,
    p.scope AS SCOPE, p.name AS NAME, 'varchar' AS DATA_TYPE, p.value AS VALUE, '' AS INFO,
    'SECTION' AS SECTION, 'DYNAMIC_EFFECTIVE' AS EDIT_LEVEL FROM servers s CROSS JOIN parameters p;
CREATE VIEW CDB_OB_LS_LOCATIONS AS SELECT 1 AS TENANT_ID, 1 AS LS_ID, svr_ip AS SVR_IP,
    svr_port AS SVR_PORT, sql_port AS SQL_PORT, zone AS ZONE,
    CASE WHEN with_rootserver = 'YES' THEN 'LEADER' ELSE 'FOLLOWER' END AS ROLE,
    'FULL' AS REPLICA_TYPE FROM servers;
CREATE VIEW GV$OB_IO_CALIBRATION_STATUS AS SELECT svr_ip AS SVR_IP, svr_port AS SVR_PORT,
    storage_name AS STORAGE_NAME, io_calibration_status(started) AS STATUS, start_time AS START_TIME,
    io_calibration_finish(started) AS FINISH_TIME FROM io_calibration;
CREATE VIEW DBA_RSRC_PLANS AS SELECT plan AS PLAN, comments AS COMMENTS FROM rsrc_plans;
CREATE VIEW DBA_RSRC_CONSUMER_GROUPS AS SELECT consumer_group AS CONSUMER_GROUP, comments AS COMMENTS
    FROM rsrc_consumer_groups;
CREATE VIEW DBA_RSRC_PLAN_DIRECTIVES AS SELECT plan AS PLAN, group_or_subplan AS GROUP_OR_SUBPLAN,
    comments AS COMMENTS, mgmt_p1 AS MGMT_P1, utilization_limit AS UTILIZATION_LIMIT
    FROM rsrc_plan_directives;
CREATE VIEW DBA_RSRC_GROUP_MAPPINGS AS SELECT attribute AS ATTRIBUTE, value AS VALUE,
    consumer_group AS CONSUMER_GROUP FROM rsrc_group_mappings;
CREATE VIEW "user" AS SELECT host COLLATE GENERAL_CI AS host, user COLLATE GENERAL_CI AS user,
    CASE WHEN auth_string = '' THEN '' ELSE '*' || upper(auth_string) END AS password,
    'ob_native_password' AS plugin, '' AS authentication_string, 'N' AS account_locked FROM users;
"""

_VIEWS = {
    "DBA_OB_SERVERS",
    "GV$OB_SERVERS",
    "DBA_OB_ZONES",
    "DBA_OB_TENANTS",
    "DBA_OB_UNIT_CONFIGS",
    "DBA_OB_RESOURCE_POOLS",
    "DBA_OB_UNITS",
    "GV$OB_PARAMETERS",
    "CDB_OB_LS_LOCATIONS",
    "GV$OB_IO_CALIBRATION_STATUS",
    "DBA_RSRC_PLANS",
    "DBA_RSRC_CONSUMER_GROUPS",
    "DBA_RSRC_PLAN_DIRECTIVES",
    "DBA_RSRC_GROUP_MAPPINGS",
}


class SimError(Exception):
    """An error the simulator answers with, as OceanBase would."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Result:
    columns: list[str] = field(default_factory=list)
    rows: list[Sequence[Any]] = field(default_factory=list)


@dataclass
class Fault:
    """An injected error: statements matching `match` (on `server`, or any) fail `times` times, after
    the first `skip` of them ran normally."""

    match: str
    error: int
    message: str
    server: str | None = None
    times: int = 1
    delay: float = 0.0
    skip: int = 0

    def applies(self, sql: str, server: str) -> bool:
        return (
            self.times != 0
            and (self.server is None or self.server == server)
            and re.search(self.match, sql, re.IGNORECASE | re.DOTALL) is not None
        )


def native_password_hash(password: str) -> str:
    """MySQL's mysql_native_password auth string: SHA1(SHA1(password)) in hex."""
    return hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest()


def mask_secrets(sql: str) -> str:
    """The statement as logged: passwords (and password hashes) replaced by ***."""
    return re.sub(
        r"(IDENTIFIED\s+(?:BY\s+(?:PASSWORD\s+)?|WITH\s+\S+\s+(?:BY|AS)\s+))'(?:[^'\\]|\\.|'')*'",
        r"\1'***'",
        sql,
        flags=re.IGNORECASE,
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class ServerSpec:
    ip: str
    rpc_port: int
    sql_port: int
    zone: str

    @property
    def label(self) -> str:
        return f"{self.ip}:{self.rpc_port}"


class SimCluster:
    """A cluster's state and the statements that read and change it. Thread-safe."""

    def __init__(
        self,
        *,
        servers: list[ServerSpec],
        root_password: str,
        cluster_name: str = "obcluster",
        cluster_id: int = 1,
        version: str = "4.2.1.8",
        io_calibration_seconds: float = 1.0,
        standby: bool = False,
    ) -> None:
        self.version = version
        self.standby = standby
        self.cluster_name = cluster_name
        self.cluster_id = cluster_id
        self.io_calibration_seconds = io_calibration_seconds
        self.faults: list[Fault] = []
        self._lock = threading.RLock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._db.create_function("version", 0, lambda: self.version_string)
        self._db.create_function("ob_version", 0, lambda: self.version)
        self._db.create_function("now", 0, _now)
        self._db.create_function("io_calibration_status", 1, self._calibration_status)
        self._db.create_function("io_calibration_finish", 1, self._calibration_finish)
        self._db.create_function("current_user", 0, lambda: f"{self._statement_user}@%")
        self._db.create_function("ob_variable", 1, lambda index: self._statement_values[index])
        self._db.create_collation("GENERAL_CI", _general_ci)
        self._db.create_collation("UTF8MB4_BIN", _utf8mb4_bin)
        self._db.executescript(_SCHEMA)
        self.variables = SystemVariables(
            {
                "version": self.version_string,
                "version_comment": self.version_comment,
                "system_time_zone": local_utc_offset(),
            }
        )
        # The session and user of the statement running (statements run one at a time, under the lock).
        self._session: Hashable = None
        self._statement_user = ""
        self._statement_values: list[Value] = []
        self._seed(servers, root_password)

    @property
    def version_string(self) -> str:
        return f"5.7.25-OceanBase_CE-v{self.version}"

    @property
    def version_comment(self) -> str:
        """@@version_comment in OceanBase CE's form: the product, the version (what OCP's agent reads, the
        second word), the build's revision and date."""
        revision = hashlib.sha1(self.version.encode()).hexdigest()
        return f"OceanBase_CE {self.version} (r100000000-{revision}) (Built Jan  1 2024 00:00:00)"

    # --- seed -------------------------------------------------------------------------------

    def _seed(self, servers: list[ServerSpec], root_password: str) -> None:
        db = self._db
        zones = sorted({s.zone for s in servers})
        started = _now()
        for index, server in enumerate(servers):
            db.execute(
                "INSERT INTO servers VALUES (?, ?, ?, ?, ?, ?, 'ACTIVE', ?, NULL, NULL, ?)",
                (
                    server.ip,
                    server.rpc_port,
                    server.sql_port,
                    index + 1,
                    server.zone,
                    "YES" if index == 0 else "NO",
                    started,
                    f"{self.version}_{100000000 + index}-x86_64",
                ),
            )
        for number, zone in enumerate(zones, start=1):
            db.execute(
                "INSERT INTO zones VALUES (?, 'ACTIVE', ?, ?, 'ReadWrite')",
                (zone, "sys_region", f"idc{number}"),
            )
        rs_list = ";".join(f"{s.ip}:{s.rpc_port}:{s.sql_port}" for s in servers if s.zone == zones[0])
        parameters = dict(KNOWN_PARAMETERS)
        parameters.update(
            cluster=self.cluster_name,
            cluster_id=str(self.cluster_id),
            rootservice_list=rs_list,
            min_observer_version=self.version,
        )
        for name, value in parameters.items():
            db.execute("INSERT INTO parameters VALUES (?, ?, 'CLUSTER')", (name, value))
        db.execute("INSERT INTO users VALUES ('root', '%', ?)", (native_password_hash(root_password),))
        db.execute("INSERT INTO grants VALUES ('root', '%', 'ALL PRIVILEGES', '*.*')")
        db.execute("INSERT INTO grants VALUES ('root', '%', 'GRANT OPTION', '*.*')")
        self._seed_tenants(zones, servers)

    def _seed_tenants(self, zones: list[str], servers: list[ServerSpec]) -> None:
        db = self._db
        locality = ", ".join(f"FULL{{1}}@{z}" for z in zones)
        cluster_role = "STANDBY" if self.standby else "PRIMARY"
        tenants = [
            (1, "sys", "SYS", "MYSQL", "PRIMARY"),
            (1001, "META$1002", "META", "MYSQL", cluster_role),
            (1002, "app_mysql", "USER", "MYSQL", cluster_role),
            (1003, "META$1004", "META", "MYSQL", cluster_role),
            (1004, "app_oracle", "USER", "ORACLE", cluster_role),
        ]
        for tenant_id, name, kind, mode, role in tenants:
            db.execute(
                "INSERT INTO tenants VALUES (?, ?, ?, ?, ?, ?, 'NORMAL', ?)",
                (tenant_id, name, kind, ";".join(zones), locality, mode, role),
            )
        configs = [(1, "sys_unit_config", 1.0, 1.0, 2 << 30), (1001, "app_unit", 2.0, 2.0, 4 << 30)]
        for config_id, name, max_cpu, min_cpu, memory in configs:
            db.execute(
                "INSERT INTO unit_configs VALUES (?, ?, ?, ?, ?, ?, 10000, 10000, 1)",
                (config_id, name, max_cpu, min_cpu, memory, memory * 3),
            )
        pools = [
            (1, "sys_pool", 1, 1),
            (1001, "app_mysql_pool", 1002, 1001),
            (1002, "app_oracle_pool", 1004, 1001),
        ]
        unit_id = 1
        for pool_id, name, tenant_id, config_id in pools:
            db.execute(
                "INSERT INTO resource_pools VALUES (?, ?, 1, ?, ?, ?)",
                (pool_id, name, config_id, ";".join(zones), tenant_id),
            )
            for zone in zones:
                server = next(s for s in servers if s.zone == zone)
                db.execute(
                    "INSERT INTO units VALUES (?, ?, 'ACTIVE', ?, ?, ?, ?, ?)",
                    (unit_id, tenant_id, pool_id, zone, server.ip, server.rpc_port, config_id),
                )
                unit_id += 1

    # --- io calibration, computed from the time the job started --------------------------------

    def _calibration_status(self, started: float | None) -> str:
        if started is None:
            return "NOT AVAILABLE"
        return "READY" if time.time() - started >= self.io_calibration_seconds else "IN PROGRESS"

    def _calibration_finish(self, started: float | None) -> str | None:
        if started is None or time.time() - started < self.io_calibration_seconds:
            return None
        moment = datetime.fromtimestamp(started + self.io_calibration_seconds, UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")

    # --- logins ---------------------------------------------------------------------------------

    def auth_string(self, username: str) -> str | None:
        """The stored hash for a login name (`user`, `user@sys`, `user@sys#cluster[:id]`), or None.

        A proxy-style name must carry this cluster's name (and id, when given), as through OBProxy.
        """
        match = re.fullmatch(r"([^@#:]+)(?:@([^#:]+))?(?:#([^:]+)(?::(\d+))?)?", username)
        if not match:
            return None
        user, tenant, cluster, cluster_id = match.groups()
        if tenant not in (None, "sys"):
            return None
        if cluster is not None and cluster != self.cluster_name:
            return None
        if cluster_id is not None and int(cluster_id) != self.cluster_id:
            return None
        with self._lock:
            account = self._login_account(user)
            row = self._db.execute("SELECT auth_string FROM users WHERE user = ? AND host = ?", account).fetchone()
        return row[0] if row else None

    def _login_account(self, user: str) -> tuple[str, str]:
        """The account a client of the simulator logs in as: of the accounts named exactly `user`, the most
        specific one whose host admits a client on loopback (`'%'` last)."""
        hosts = [host for (host,) in self._db.execute("SELECT host FROM users WHERE user = ?", (user,))]
        admitting = [host for host in hosts if _host_admits(host, "127.0.0.1") or host.lower() == "localhost"]
        admitting.sort(key=lambda host: (host == "%", "%" in host or "_" in host, host))
        return user, admitting[0] if admitting else "%"

    # --- statements -------------------------------------------------------------------------------

    def record_login(self, endpoint: str, login: str, error: int | None) -> None:
        """A login on `endpoint` (a server's ip:rpc_port, or "proxy") with the name the client sent, and the
        error it was refused with (None when it was accepted)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO logins (endpoint, login, error, at) VALUES (?, ?, ?, ?)", (endpoint, login, error, _now())
            )

    def proxy_route(self) -> str:
        """The server (ip:rpc_port) a proxy sends a statement to: the rootservice's server while it serves, else
        the first serving server; with none serving, the rootservice's server all the same."""
        with self._lock:
            ip, port = self._db.execute(
                "SELECT svr_ip, svr_port FROM servers ORDER BY (status = 'ACTIVE' AND stop_time IS NULL) DESC, "
                "(with_rootserver = 'YES') DESC, id LIMIT 1"
            ).fetchone()
        return f"{ip}:{port}"

    def execute(
        self, sql: str, server: str, user: str, *, login: str | None = None, endpoint: str | None = None
    ) -> Result:
        """Run one statement as `user` on `server` (ip:rpc_port); SimError on failure.

        The log keeps where the session came in (`endpoint`, the server itself unless given) and the name it
        logged in with (`login`, `user` unless given).
        """
        statement = sql.strip().rstrip(";").strip()
        via = (endpoint or server, login or user)
        session = (via[0], mimic_context.connection_id.get(None))
        with self._lock:
            fault = next((f for f in self.faults if f.applies(statement, server)), None)
            if fault is not None and fault.skip > 0:
                fault.skip -= 1
                fault = None
            elif fault is not None:
                fault.times -= 1
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.error:
                self._log(server, user, statement, fault.error, via)
                raise SimError(fault.error, fault.message)
        with self._lock:
            self._session, self._statement_user = session, user.split("@")[0]
            try:
                result = self._dispatch(statement, self._statement_user)
            except SimError as exc:
                self._log(server, user, statement, exc.code, via)
                raise
            self._log(server, user, statement, None, via)
            return result

    def _log(self, server: str, user: str, sql: str, error: int | None, via: tuple[str, str]) -> None:
        if re.match(r"(?i)(SET\s+(AUTOCOMMIT|NAMES|SESSION|@@SESSION)|SELECT\s+@@)", sql):
            return  # driver housekeeping, not the client's work
        self._db.execute(
            "INSERT INTO statements (server, user, sql, error, at, endpoint, login) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (server, user.split("@")[0], mask_secrets(sql), error, _now(), *via),
        )

    def _dispatch(self, sql: str, user: str) -> Result:
        # Leading comments (a driver's name, as Connector/J sends it) say nothing about the statement.
        sql = re.sub(r"^(?:/\*.*?\*/\s*)+", "", sql, flags=re.DOTALL)
        if not self.variables.backslash_escapes(self._session):
            # Read the literals as this session's sql_mode does, and parse on in the default mode's form.
            try:
                sql = rewrite_literals(sql, False, escaped)
            except UnterminatedLiteral:
                raise _syntax_error(sql) from None
        head = sql.split(None, 1)[0].upper() if sql else ""
        upper = sql.upper()
        if head == "SELECT":
            return self._select(sql)
        if head == "SHOW":
            return self._show(sql, user)
        if head == "SET":
            return self._set(sql)
        if upper.startswith("CREATE USER"):
            return self._create_user(sql)
        if upper.startswith("ALTER USER"):
            return self._alter_user(sql)
        if upper.startswith("DROP USER"):
            return self._drop_user(sql)
        if head == "GRANT":
            return self._grant(sql)
        if head == "REVOKE":
            return self._revoke(sql)
        if upper.startswith("ALTER SYSTEM"):
            return self._alter_system(sql)
        if head == "CALL":
            return self._call(sql)
        if head in ("BEGIN", "COMMIT", "ROLLBACK") or upper == "START TRANSACTION":
            return Result()
        raise _syntax_error(sql)

    # SELECT: OceanBase names are rewritten to the SQLite views, then SQLite runs the query.
    def _select(self, sql: str) -> Result:
        literals: list[str] = []

        def hold(value: str) -> str:
            literals.append(value)
            return f"\x00{len(literals) - 1}\x00"

        try:
            # Literals are held aside while names are rewritten, and put back in SQLite's form.
            rewritten = rewrite_literals(sql, True, hold)
        except UnterminatedLiteral:
            raise _syntax_error(sql) from None
        rewritten = re.sub(r"(?i)\boceanbase\.", "", rewritten)
        rewritten = re.sub(r"(?i)\bmysql\.user\b", '"user"', rewritten)
        for table in re.findall(r"(?i)\b(?:FROM|JOIN)\s+([\w$.\"]+)", rewritten):
            bare = table.strip('"')
            if bare.upper() not in _VIEWS and bare != "user":
                raise SimError(ER_NO_SUCH_TABLE, f"Table 'oceanbase.{bare}' doesn't exist")
        # BINARY compares bytes without padding (SQLite's BINARY); utf8mb4_bin ignores trailing spaces.
        rewritten = re.sub(r"(?i)\bBINARY\s+(\x00\d+\x00|[\w$.\"]+)", r"(\1 COLLATE BINARY)", rewritten)
        rewritten = re.sub(r"(?i)\bCOLLATE\s+utf8mb4_general_ci\b", "COLLATE GENERAL_CI", rewritten)
        self._statement_values = []
        names: dict[str, str] = {}

        def variable(match: re.Match[str]) -> str:
            scope: Scope | None = None
            if match.group(1):
                scope = "global" if match.group(1).lower() == "global" else "session"
            self._statement_values.append(self._variable(match.group(2), scope))
            call = f"ob_variable({len(self._statement_values) - 1})"
            names[call] = match.group(0)
            return call

        rewritten = re.sub(r"(?i)@@(?:(global|session|local)\.)?(\w+)", variable, rewritten)
        rewritten = re.sub(r"\x00(\d+)\x00", lambda m: sqlite_literal(literals[int(m.group(1))]), rewritten)
        try:
            cursor = self._db.execute(rewritten)
        except sqlite3.OperationalError as exc:
            text = str(exc)
            missing = re.match(r"no such table: (\S+)", text)
            if missing:
                raise SimError(ER_NO_SUCH_TABLE, f"Table 'oceanbase.{missing.group(1)}' doesn't exist") from None
            raise _syntax_error(sql) from None
        columns = []
        for description in cursor.description or []:
            column = description[0]
            # A column without an alias is named by its expression, as the client wrote it.
            for call, written in names.items():
                column = column.replace(call, written)
            columns.append(column)
        return Result(columns, [tuple(row) for row in cursor.fetchall()])

    def _variable(self, name: str, scope: Scope | None) -> Value:
        try:
            return self.variables.read(self._session, name, scope)
        except VariableError as exc:
            raise SimError(exc.code, exc.message) from None

    def _show(self, sql: str, user: str) -> Result:
        match = re.fullmatch(r"(?is)SHOW\s+PARAMETERS(?:\s+LIKE\s+'([^']*)')?", sql)
        if match:
            pattern = match.group(1) or "%"
            cursor = self._db.execute(
                # The columns of OceanBase 4.x's SHOW PARAMETERS (seekdb, a single server, has no zone or address).
                "SELECT ZONE AS zone, 'observer' AS svr_type, SVR_IP AS svr_ip, SVR_PORT AS svr_port, NAME AS name, "
                "DATA_TYPE AS data_type, VALUE AS value, INFO AS info, SECTION AS section, SCOPE AS scope, "
                "'DEFAULT' AS source, EDIT_LEVEL AS edit_level, '' AS default_value, 0 AS isdefault "
                "FROM GV$OB_PARAMETERS WHERE NAME LIKE ? ORDER BY SVR_IP, SVR_PORT, NAME",
                (pattern,),
            )
            return Result([d[0] for d in cursor.description], [tuple(r) for r in cursor.fetchall()])
        match = re.fullmatch(r"(?is)SHOW\s+GRANTS(?:\s+FOR\s+(?:CURRENT_USER(?:\s*\(\s*\))?|" + _ACCOUNT + "))?", sql)
        if match:
            account = _account(match.group(1)) if match.group(1) else self._login_account(user)
            if not self._account_exists(account):
                raise self._no_such_user()
            name, host = account
            return Result([f"Grants for {name}@{host}"], [(line,) for line in self.show_grants(*account)])
        match = re.fullmatch(
            r"(?is)SHOW\s+(GLOBAL\s+|SESSION\s+|LOCAL\s+)?VARIABLES"
            r"(?:\s+LIKE\s+" + _STRING + r"|\s+WHERE\s+Variable_name\s*=\s*" + _STRING + ")?",
            sql,
        )
        if match:
            scope: Scope = "global" if (match.group(1) or "").strip().upper() == "GLOBAL" else "session"
            if match.group(3) is not None:
                wanted = unquote(match.group(3)).lower()
                rows = self.variables.show(self._session, scope, lambda name: name == wanted)
            else:
                rows = self.variables.show(self._session, scope, _like(unquote(match.group(2) or "'%'")))
            return Result(["Variable_name", "Value"], [tuple(row) for row in rows])
        raise _syntax_error(sql)

    def _set(self, sql: str) -> Result:
        if re.match(r"(?is)SET\s+PASSWORD\b", sql):
            return self._set_password_statement(sql)
        if re.match(r"(?is)SET\s+(?:NAMES|CHARACTER\s+SET|CHARSET|(?:SESSION\s+|GLOBAL\s+)?TRANSACTION)\b", sql):
            return Result()  # what drivers send on connect: accepted, as OceanBase does
        for scope, name, value in _assignments(sql):
            try:
                self.variables.set(self._session, name, scope, value, self._check_variable)
            except VariableError as exc:
                raise SimError(exc.code, exc.message) from None
        return Result()

    def _check_variable(self, name: str, value: Value) -> None:
        exists = "SELECT 1 FROM rsrc_plans WHERE plan = ?"
        if name == "resource_manager_plan" and value and not self._db.execute(exists, (value,)).fetchone():
            raise VariableError(ER_WRONG_ARGUMENTS, f"plan '{value}' does not exist")

    # --- users and grants -------------------------------------------------------------------

    def _account_exists(self, account: tuple[str, str]) -> bool:
        return self._db.execute("SELECT 1 FROM users WHERE user = ? AND host = ?", account).fetchone() is not None

    def _no_such_user(self) -> SimError:
        return SimError(ER_NO_SUCH_USER_ROW, "Can not find any matching row in the user table")

    def _check_name_length(self, user: str) -> None:
        if len(user.encode()) > USER_NAME_BYTES:
            raise SimError(
                ER_WRONG_STRING_LENGTH,
                f"String '{user}' is too long for user name (should be no longer than {USER_NAME_BYTES})",
            )

    def _create_user(self, sql: str) -> Result:
        match = re.fullmatch(
            r"(?is)CREATE\s+USER\s+(IF\s+NOT\s+EXISTS\s+)?" + _ACCOUNT
            + r"(?:\s+IDENTIFIED\s+BY\s+(PASSWORD\s+)?" + _STRING + ")?",
            sql,
        )  # fmt: skip
        if not match:
            raise _syntax_error(sql)
        if_not_exists, account_text, by_hash, literal = match.groups()
        user, host = _account(account_text)
        self._check_name_length(user)
        if by_hash:
            auth = _hash_of(_unquote(literal))
        else:
            auth = native_password_hash(_unquote(literal)) if literal is not None else ""
        if not user:
            raise SimError(ER_CANNOT_USER, f"Operation CREATE USER failed for {host}")
        if self._account_exists((user, host)):
            if if_not_exists:
                return Result()
            raise SimError(ER_CANNOT_USER, f"Operation CREATE USER failed for '{user}'@'{host}'")
        self._db.execute("INSERT INTO users VALUES (?, ?, ?)", (user, host, auth))
        return Result()

    def _alter_user(self, sql: str) -> Result:
        # OceanBase's grammar has no ALTER USER … IDENTIFIED BY PASSWORD: that is a syntax error. A string
        # after `AS` is hashed again like a password (proven on seekdb).
        match = re.fullmatch(
            r"(?is)ALTER\s+USER\s+" + _ACCOUNT
            + r"\s+IDENTIFIED\s+(?:WITH\s+'?mysql_native_password'?\s+(?:BY|AS)|BY)\s+" + _STRING,
            sql,
        )  # fmt: skip
        if not match:
            raise _syntax_error(sql)
        account, literal = _account(match.group(1)), match.group(2)
        if not self._account_exists(account):
            raise self._no_such_user()
        self._set_password(account, native_password_hash(_unquote(literal)))
        return Result()

    def _set_password(self, account: tuple[str, str], auth: str) -> None:
        self._db.execute("UPDATE users SET auth_string = ? WHERE user = ? AND host = ?", (auth, *account))

    def _set_password_statement(self, sql: str) -> Result:
        # SET PASSWORD FOR u = PASSWORD('x') hashes x; = 'string' hashes the string too (proven on seekdb).
        match = re.fullmatch(
            r"(?is)SET\s+PASSWORD\s+FOR\s+"
            + _ACCOUNT
            + r"\s*=\s*(?:PASSWORD\s*\(\s*"
            + _STRING
            + r"\s*\)|"
            + _STRING
            + ")",
            sql,
        )
        if not match:
            raise _syntax_error(sql)
        account_text, in_function, literal = match.groups()
        account = _account(account_text)
        if not self._account_exists(account):
            raise self._no_such_user()
        self._set_password(account, native_password_hash(_unquote(in_function or literal)))
        return Result()

    def _drop_user(self, sql: str) -> Result:
        match = re.fullmatch(r"(?is)DROP\s+USER\s+(IF\s+EXISTS\s+)?(" + _ACCOUNT_LIST + ")", sql)
        if not match:
            raise _syntax_error(sql)
        if_exists, names = match.group(1), match.group(2)
        targets = [_account(m.group(0)) for m in re.finditer(_ACCOUNT_PATTERN, names)]
        for user, host in targets:
            if (not if_exists and not self._account_exists((user, host))) or (user, host) == ("root", "%"):
                raise SimError(ER_CANNOT_USER, f"Operation DROP USER failed for '{user}'@'{host}'")
        for account in targets:
            self._db.execute("DELETE FROM users WHERE user = ? AND host = ?", account)
            self._db.execute("DELETE FROM grants WHERE user = ? AND host = ?", account)
        return Result()

    def _privileges_and_object(self, privileges: str, target: str, sql: str) -> tuple[list[str], str]:
        found = re.fullmatch(r"`?(\*|\w+)`?\.`?(\*|[\w$]+)`?", target)
        if not found:
            raise _syntax_error(sql)
        database, table = found.group(1).lower(), found.group(2)
        if table != "*" and table.upper() not in _VIEWS:
            raise SimError(ER_NO_SUCH_TABLE, f"Table '{database}.{table.lower()}' doesn't exist")
        wanted = [" ".join(p.split()).upper() for p in privileges.split(",")]
        if any(p not in _PRIVILEGES for p in wanted):
            raise SimError(
                ER_PRIVILEGE_TYPE,
                "You have an error in your SQL syntax; check the manual that corresponds to your OceanBase "
                "version for the right syntax to use",
            )
        wanted = ["ALL PRIVILEGES" if p == "ALL" else p for p in wanted]
        return wanted, f"{database}.{table.upper() if table != '*' else '*'}"

    def _grant(self, sql: str) -> Result:
        match = re.fullmatch(
            r"(?is)GRANT\s+(.+?)\s+ON\s+(\S+)\s+TO\s+" + _ACCOUNT + r"(\s+WITH\s+GRANT\s+OPTION)?", sql
        )
        if not match:
            raise _syntax_error(sql)
        privileges, target, account_text, grant_option = match.groups()
        wanted, target = self._privileges_and_object(privileges, target, sql)
        user, host = _account(account_text)
        self._check_name_length(user)
        if not self._account_exists((user, host)):
            # What OceanBase answers (proven on seekdb), not MySQL's 1133.
            raise SimError(ER_ACCESS_DENIED, f"Access denied for user '{user}'@'{host}' (using password: NO)")
        if grant_option:
            wanted.append("GRANT OPTION")
        for privilege in wanted:
            if privilege == "USAGE":
                continue
            if privilege == "ALL PRIVILEGES":
                self._db.execute(
                    "DELETE FROM grants WHERE user = ? AND host = ? AND object = ? AND privilege != 'GRANT OPTION'",
                    (user, host, target),
                )
            self._db.execute("INSERT OR IGNORE INTO grants VALUES (?, ?, ?, ?)", (user, host, privilege, target))
        return Result()

    def _revoke(self, sql: str) -> Result:
        match = re.fullmatch(r"(?is)REVOKE\s+(.+?)\s+ON\s+(\S+)\s+FROM\s+" + _ACCOUNT, sql)
        if not match:
            raise _syntax_error(sql)
        privileges, target, account_text = match.groups()
        wanted, target = self._privileges_and_object(privileges, target, sql)
        account = _account(account_text)
        self._check_name_length(account[0])
        if not self._account_exists(account):
            raise self._no_such_user()
        held = {
            p
            for (p,) in self._db.execute(
                "SELECT privilege FROM grants WHERE user = ? AND host = ? AND object = ?", (*account, target)
            )
        }
        # Global privileges always have a row to revoke from; a database or table has one only while the
        # account holds something on it (proven on seekdb).
        if not held and target != "*.*":
            raise SimError(ER_NO_SUCH_GRANT_DEFINED, "No such grant defined")
        removed = held - {"GRANT OPTION"} if "ALL PRIVILEGES" in wanted else held & set(wanted)
        for privilege in removed:
            self._db.execute(
                "DELETE FROM grants WHERE user = ? AND host = ? AND privilege = ? AND object = ?",
                (*account, privilege, target),
            )
        return Result()

    def show_grants(self, user: str, host: str = "%") -> list[str]:
        """SHOW GRANTS lines as OceanBase prints them: the global privileges (or USAGE) first, then one line
        per database (backquoted) and table, privileges in OceanBase's order, WITH GRANT OPTION last. The
        account is `'user'` for the default host, `'user'@'host'` for any other."""
        objects: dict[str, set[str]] = {}
        for privilege, target in self._db.execute(
            "SELECT privilege, object FROM grants WHERE user = ? AND host = ?", (user, host)
        ):
            objects.setdefault(target, set()).add(privilege)
        objects.setdefault("*.*", set())
        account = f"'{user}'" if host == "%" else f"'{user}'@'{host}'"
        lines = []
        for target in sorted(objects, key=lambda t: (t != "*.*", t)):
            held = objects[target]
            listed = [p for p in _PRIVILEGE_ORDER if p in held] or ["USAGE"]
            database, table = target.split(".")
            shown = target if target == "*.*" else f"`{database}`.{'*' if table == '*' else f'`{table}`'}"
            option = " WITH GRANT OPTION" if "GRANT OPTION" in held else ""
            lines.append(f"GRANT {', '.join(listed)} ON {shown} TO {account}{option}")
        return lines

    # --- ALTER SYSTEM ---------------------------------------------------------------------------

    def _alter_system(self, sql: str) -> Result:
        match = re.fullmatch(
            r"(?is)ALTER\s+SYSTEM\s+SET\s+(\w+)\s*=\s*(" + _STRING[1:-1] + r"|-?\w+)"
            r"(?:\s+SCOPE\s*=\s*(?:MEMORY|SPFILE|BOTH))?",
            sql,
        )
        if match:
            name, raw = match.group(1).lower(), match.group(2)
            value = _unquote(raw) if raw.startswith("'") else raw
            if name not in KNOWN_PARAMETERS:
                raise SimError(ER_SYS_CONFIG_UNKNOWN, "System config unknown")
            if name in ("cluster", "cluster_id"):
                raise SimError(ER_NOT_SUPPORTED, f"modify {name} not supported")
            if not _valid_parameter_value(name, value):
                raise SimError(ER_INVALID_CONFIG, "Invalid config")
            self._db.execute("UPDATE parameters SET value = ? WHERE name = ?", (value, name))
            return Result()
        if re.fullmatch(r"(?is)ALTER\s+SYSTEM\s+RELOAD\s+SERVER", sql):
            return Result()
        match = re.fullmatch(r"(?is)ALTER\s+SYSTEM\s+RUN\s+JOB\s+'(\w+)'(?:\s+(SERVER|ZONE)\s*=\s*'([^']*)')?", sql)
        if match:
            return self._run_job(sql, match.group(1), match.group(2), match.group(3))
        raise _syntax_error(sql)

    def _run_job(self, sql: str, job: str, scope: str | None, target: str | None) -> Result:
        if job.lower() != "io_calibration":
            raise SimError(ER_NOT_SUPPORTED, f"job '{job}' not supported")
        if scope and scope.upper() == "SERVER":
            ip, _, port = (target or "").rpartition(":")
            rows = self._db.execute(
                "SELECT svr_ip, svr_port FROM servers WHERE svr_ip = ? AND svr_port = ?", (ip, port or 0)
            ).fetchall()
            if not rows:
                raise SimError(ER_WRONG_ARGUMENTS, f"server '{target}' is not in the cluster")
        elif scope:
            rows = self._db.execute("SELECT svr_ip, svr_port FROM servers WHERE zone = ?", (target,)).fetchall()
            if not rows:
                raise SimError(ER_WRONG_ARGUMENTS, f"zone '{target}' is not in the cluster")
        else:
            rows = self._db.execute("SELECT svr_ip, svr_port FROM servers").fetchall()
        for ip, port in rows:
            self._db.execute(
                "INSERT OR REPLACE INTO io_calibration VALUES (?, ?, 'DATA', ?, ?)",
                (ip, port, time.time(), _now()),
            )
        return Result()

    # --- DBMS_RESOURCE_MANAGER --------------------------------------------------------------------

    def _call(self, sql: str) -> Result:
        match = re.fullmatch(r"(?is)CALL\s+DBMS_RESOURCE_MANAGER\.(\w+)\s*\((.*)\)", sql)
        if not match:
            raise _syntax_error(sql)
        procedure = match.group(1).upper()
        args = _call_arguments(match.group(2), sql)
        spec = _PROCEDURES.get(procedure)
        if spec is None:
            raise SimError(ER_SP_DOES_NOT_EXIST, f"PROCEDURE DBMS_RESOURCE_MANAGER.{procedure} does not exist")
        values = _bind(procedure, spec, args, sql)
        db = self._db
        if procedure == "CREATE_PLAN":
            self._insert_unique("rsrc_plans", (values["PLAN"], values.get("COMMENT") or ""), values["PLAN"])
        elif procedure == "DELETE_PLAN":
            self._delete_existing("rsrc_plans", "plan", values["PLAN"])
            db.execute("DELETE FROM rsrc_plan_directives WHERE plan = ?", (values["PLAN"],))
        elif procedure == "CREATE_CONSUMER_GROUP":
            group = values["CONSUMER_GROUP"]
            self._insert_unique("rsrc_consumer_groups", (group, values.get("COMMENT") or ""), group)
        elif procedure == "DELETE_CONSUMER_GROUP":
            self._delete_existing("rsrc_consumer_groups", "consumer_group", values["CONSUMER_GROUP"])
        elif procedure == "CREATE_PLAN_DIRECTIVE":
            plan, group = values["PLAN"], values["GROUP_OR_SUBPLAN"]
            for table, column, value in (
                ("rsrc_plans", "plan", plan),
                ("rsrc_consumer_groups", "consumer_group", group),
            ):
                if not db.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (value,)).fetchone():
                    raise SimError(ER_WRONG_ARGUMENTS, f"{column} '{value}' does not exist")
            self._insert_unique(
                "rsrc_plan_directives",
                (
                    plan,
                    group,
                    values.get("COMMENT") or "",
                    int(values.get("MGMT_P1") or 100),
                    int(values.get("UTILIZATION_LIMIT") or 100),
                ),
                f"{plan}-{group}",
            )
        elif procedure == "DELETE_PLAN_DIRECTIVE":
            found = db.execute(
                "DELETE FROM rsrc_plan_directives WHERE plan = ? AND group_or_subplan = ?",
                (values["PLAN"], values["GROUP_OR_SUBPLAN"]),
            ).rowcount
            if not found:
                raise SimError(ER_WRONG_ARGUMENTS, "plan directive does not exist")
        elif procedure == "SET_CONSUMER_GROUP_MAPPING":
            attribute, value, group = (
                values["ATTRIBUTE"].upper(),
                values["VALUE"],
                values.get("CONSUMER_GROUP"),
            )
            if group is None:
                db.execute("DELETE FROM rsrc_group_mappings WHERE attribute = ? AND value = ?", (attribute, value))
            else:
                db.execute("INSERT OR REPLACE INTO rsrc_group_mappings VALUES (?, ?, ?)", (attribute, value, group))
        return Result()

    def _insert_unique(self, table: str, row: tuple[Any, ...], key: str) -> None:
        try:
            self._db.execute(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in row)})", row)
        except sqlite3.IntegrityError:
            raise SimError(ER_DUP_ENTRY, f"Duplicate entry '{key}' for key 'PRIMARY'") from None

    def _delete_existing(self, table: str, column: str, value: str) -> None:
        if not self._db.execute(f"DELETE FROM {table} WHERE {column} = ?", (value,)).rowcount:
            raise SimError(ER_WRONG_ARGUMENTS, f"{column} '{value}' does not exist")

    # --- control ------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything a test checks: users, grants, parameters, io calibration, plans, statements (by server, and
        in order with the endpoint and login name each came through), and every login with its endpoint."""
        with self._lock:
            q = self._db.execute

            def rows(sql: str) -> list[dict[str, Any]]:
                cursor = q(sql)
                names = [d[0].lower() for d in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

            grants_sql = "SELECT privilege, object FROM grants WHERE user = ? AND host = ? ORDER BY object, privilege"
            statements: dict[str, list[str]] = {}
            for server, sql in q("SELECT server, sql FROM statements WHERE error IS NULL ORDER BY seq"):
                statements.setdefault(server, []).append(sql)
            return {
                "cluster": {
                    "name": self.cluster_name,
                    "id": self.cluster_id,
                    "version": self.version,
                    "standby": self.standby,
                },
                # Accounts of the default host by their user name, any other as user@host.
                "users": {
                    user if host == "%" else f"{user}@{host}": {
                        "host": host,
                        "grants": [f"{p} ON {o}" for p, o in q(grants_sql, (user, host))],
                    }
                    for user, host in q("SELECT user, host FROM users ORDER BY user, host")
                },
                "parameters": dict(q("SELECT name, value FROM parameters ORDER BY name").fetchall()),
                "variables": dict(sorted(self.variables.changed.items())),
                "servers": rows("SELECT * FROM DBA_OB_SERVERS ORDER BY SVR_IP, SVR_PORT"),
                "zones": rows("SELECT * FROM DBA_OB_ZONES ORDER BY ZONE"),
                "io_calibration": {
                    f"{r['svr_ip']}:{r['svr_port']}": r["status"]
                    for r in rows("SELECT * FROM GV$OB_IO_CALIBRATION_STATUS")
                },
                "resource_manager": {
                    "plans": rows("SELECT * FROM DBA_RSRC_PLANS ORDER BY PLAN"),
                    "consumer_groups": rows("SELECT * FROM DBA_RSRC_CONSUMER_GROUPS ORDER BY CONSUMER_GROUP"),
                    "directives": rows("SELECT * FROM DBA_RSRC_PLAN_DIRECTIVES ORDER BY PLAN, GROUP_OR_SUBPLAN"),
                    "mappings": rows("SELECT * FROM DBA_RSRC_GROUP_MAPPINGS ORDER BY ATTRIBUTE, VALUE"),
                },
                "statements": statements,
                "statement_log": rows("SELECT server, endpoint, login, sql, error FROM statements ORDER BY seq"),
                "logins": rows("SELECT endpoint, login, error FROM logins ORDER BY seq"),
            }

    def password_matches(self, user: str, password: str) -> bool:
        with self._lock:
            account = self._login_account(user)
            row = self._db.execute("SELECT auth_string FROM users WHERE user = ? AND host = ?", account).fetchone()
        return bool(row) and row[0] == native_password_hash(password)

    def add_fault(self, fault: Fault) -> None:
        re.compile(fault.match)
        with self._lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def update_server(self, label: str, values: dict[str, Any]) -> bool:
        """Change a server's STATUS / STOP_TIME / START_SERVICE_TIME (control API)."""
        ip, _, port = label.rpartition(":")
        allowed = {k: v for k, v in values.items() if k in ("status", "stop_time", "start_service_time")}
        if not allowed:
            return False
        with self._lock:
            assignments = ", ".join(f"{k} = ?" for k in allowed)
            return bool(
                self._db.execute(
                    f"UPDATE servers SET {assignments} WHERE svr_ip = ? AND svr_port = ?",
                    (*allowed.values(), ip, port),
                ).rowcount
            )

    def add_server(self, ip: str, rpc_port: int, sql_port: int, zone: str) -> bool:
        """A server row added by hand (control API), ACTIVE and serving, as `ALTER SYSTEM ADD SERVER` and a
        started observer leave it; False when the server is listed already or the zone does not exist."""
        with self._lock:
            db = self._db
            if db.execute("SELECT 1 FROM servers WHERE svr_ip = ? AND svr_port = ?", (ip, rpc_port)).fetchone():
                return False
            if not db.execute("SELECT 1 FROM zones WHERE zone = ?", (zone,)).fetchone():
                return False
            (number,) = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM servers").fetchone()
            db.execute(
                "INSERT INTO servers VALUES (?, ?, ?, ?, ?, 'NO', 'ACTIVE', ?, NULL, NULL, ?)",
                (ip, rpc_port, sql_port, number, zone, _now(), f"{self.version}_{100000000 + number}-x86_64"),
            )
            return True

    def remove_server(self, label: str) -> bool:
        """A server deleted by hand (control API), as `ALTER SYSTEM DELETE SERVER` leaves DBA_OB_SERVERS."""
        ip, _, port = label.rpartition(":")
        with self._lock:
            return bool(self._db.execute("DELETE FROM servers WHERE svr_ip = ? AND svr_port = ?", (ip, port)).rowcount)

    def update_zone(self, zone: str, values: dict[str, Any]) -> bool:
        allowed = {k: v for k, v in values.items() if k in ("status", "region", "idc")}
        if not allowed:
            return False
        with self._lock:
            assignments = ", ".join(f"{k} = ?" for k in allowed)
            return bool(
                self._db.execute(f"UPDATE zones SET {assignments} WHERE zone = ?", (*allowed.values(), zone)).rowcount
            )

    def set_parameter(self, name: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO parameters VALUES (?, ?, 'CLUSTER')", (name, value))

    def dump(self) -> str:
        return json.dumps(self.state(), indent=2, sort_keys=True)


_STRING = r"('(?:[^'\\]|\\.|'')*')"
# A name in an account: quoted ('…', `…` or "…") or bare.
_NAME = r"""(?:'(?:[^'\\]|\\.|'')*'|`(?:[^`]|``)*`|"(?:[^"\\]|\\.|"")*"|[\w$]+)"""
# An account: a user name with an optional @host (the default host is '%'). One group.
_ACCOUNT_PATTERN = _NAME + r"(?:\s*@\s*" + _NAME + ")?"
_ACCOUNT = "(" + _ACCOUNT_PATTERN + ")"
_ACCOUNT_LIST = _ACCOUNT_PATTERN + r"(?:\s*,\s*" + _ACCOUNT_PATTERN + ")*"
# The order SHOW GRANTS lists privileges in (SELECT before PROCESS is proven on seekdb; the rest follows
# OceanBase's privilege bits).
_PRIVILEGE_ORDER = (
    "ALL PRIVILEGES", "ALTER", "CREATE", "CREATE USER", "DELETE", "DROP", "INSERT", "UPDATE", "SELECT", "INDEX",
    "CREATE VIEW", "SHOW VIEW", "SHOW DATABASES", "SUPER", "PROCESS",
)  # fmt: skip
_PRIVILEGES = {
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX", "CREATE VIEW", "SHOW VIEW",
    "PROCESS", "SUPER", "ALL", "ALL PRIVILEGES", "USAGE", "CREATE USER", "GRANT OPTION", "SHOW DATABASES",
}  # fmt: skip
_PROCEDURES: dict[str, tuple[str, ...]] = {
    "CREATE_PLAN": ("PLAN", "COMMENT"),
    "DELETE_PLAN": ("PLAN",),
    "CREATE_CONSUMER_GROUP": ("CONSUMER_GROUP", "COMMENT"),
    "DELETE_CONSUMER_GROUP": ("CONSUMER_GROUP",),
    "CREATE_PLAN_DIRECTIVE": ("PLAN", "GROUP_OR_SUBPLAN", "COMMENT", "MGMT_P1", "UTILIZATION_LIMIT"),
    "DELETE_PLAN_DIRECTIVE": ("PLAN", "GROUP_OR_SUBPLAN"),
    "SET_CONSUMER_GROUP_MAPPING": ("ATTRIBUTE", "VALUE", "CONSUMER_GROUP"),
}
_REQUIRED = {
    "CREATE_PLAN": {"PLAN"},
    "DELETE_PLAN": {"PLAN"},
    "CREATE_CONSUMER_GROUP": {"CONSUMER_GROUP"},
    "DELETE_CONSUMER_GROUP": {"CONSUMER_GROUP"},
    "CREATE_PLAN_DIRECTIVE": {"PLAN", "GROUP_OR_SUBPLAN"},
    "DELETE_PLAN_DIRECTIVE": {"PLAN", "GROUP_OR_SUBPLAN"},
    "SET_CONSUMER_GROUP_MAPPING": {"ATTRIBUTE", "VALUE"},
}


# What ALTER SYSTEM SET accepts for the parameters whose values the simulator checks (the rest take any
# string). Read-only parameters take nothing (4147, as data_dir on seekdb).
_READ_ONLY_PARAMETERS = {"data_dir", "redo_dir"}
_BOOLEAN_PARAMETERS = {"enable_syslog_recycle", "enable_perf_event", "enable_sql_audit", "ob_enable_prepared_statement"}
_COUNT_PARAMETERS = {"max_syslog_file_count", "cpu_count"}
_SYSLOG_LEVELS = {"DEBUG", "TRACE", "WDIAG", "EDIAG", "INFO", "WARN", "ERROR"}


def _valid_parameter_value(name: str, value: str) -> bool:
    if name in _READ_ONLY_PARAMETERS:
        return False
    if name in _BOOLEAN_PARAMETERS:
        return value.lower() in ("true", "false")
    if name in _COUNT_PARAMETERS:
        return value.isdigit()
    if name == "syslog_level":
        return value.upper() in _SYSLOG_LEVELS
    return True


def _hash_of(literal: str) -> str:
    """The stored form of `IDENTIFIED BY PASSWORD '*…'`: OceanBase takes '*' and 40 hex digits in any case."""
    if not re.fullmatch(r"\*[0-9A-Fa-f]{40}", literal):
        raise SimError(
            ER_PASSWORD_FORMAT,
            "The password hash doesn't have the expected format. Check if the correct password algorithm is "
            "being used with the PASSWORD() function.",
        )
    return literal[1:].lower()


def _unquote(literal: str) -> str:
    return unquote(literal)


def _name(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1].replace("``", "`")
    if text[0] in "'\"":
        return unquote(text)
    return text


def _account(text: str) -> tuple[str, str]:
    """(user, host) of an account as a statement names it; names are kept exactly as written."""
    match = re.fullmatch(r"(" + _NAME + r")(?:\s*@\s*(" + _NAME + "))?", text.strip())
    if match is None:
        raise ValueError(text)
    return _name(match.group(1)), _name(match.group(2)) if match.group(2) else "%"


def _host_admits(pattern: str, address: str) -> bool:
    """Whether an account's host (with % and _ wildcards) admits a client at `address`."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, address, re.IGNORECASE) is not None


def _like(pattern: str) -> Callable[[str], bool]:
    """A name test for LIKE 'pattern' (case-insensitive, as variable names compare)."""
    parts = []
    for escaped_char, wildcard, text in re.findall(r"\\(.)|([%_])|([^%_\\]+)", pattern):
        if wildcard:
            parts.append(".*" if wildcard == "%" else ".")
        else:
            parts.append(re.escape(escaped_char or text))
    regex = "".join(parts)
    return lambda name: re.fullmatch(regex, name, re.IGNORECASE | re.DOTALL) is not None


_ASSIGNMENT = re.compile(
    r"\s*(?:(GLOBAL|SESSION|LOCAL)\s+|@@(?:(GLOBAL|SESSION|LOCAL)\.)?)?(\w+)\s*:?=\s*"
    r"""('(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|-?\d+|\w+)\s*(,|$)""",
    re.IGNORECASE,
)


def _assignments(sql: str) -> list[tuple[Scope, str, SetValue]]:
    """The (scope, name, value) of each assignment in SET …: a value is text, a number, None for NULL or
    DEFAULT; a bare word (ON, OFF) is text."""
    text = re.sub(r"(?is)^SET\s+", "", sql)
    assignments: list[tuple[Scope, str, SetValue]] = []
    position = 0
    while position < len(text):
        match = _ASSIGNMENT.match(text, position)
        if match is None:
            raise _syntax_error(sql)
        word, at, name, raw, _ = match.groups()
        scope: Scope = "global" if (word or at or "").upper() == "GLOBAL" else "session"
        value: SetValue
        if raw[0] in "'\"":
            value = unquote(raw)
        elif re.fullmatch(r"-?\d+", raw):
            value = int(raw)
        elif raw.upper() == "DEFAULT":
            value = DEFAULT
        elif raw.upper() == "NULL":
            value = None
        else:
            value = raw
        assignments.append((scope, name, value))
        position = match.end()
    if not assignments:
        raise _syntax_error(sql)
    return assignments


def _general_ci_key(text: str) -> str:
    """utf8mb4_general_ci's view of a string: accents dropped, case folded, trailing spaces ignored."""
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper().rstrip(" ")


def _general_ci(left: str, right: str) -> int:
    a, b = _general_ci_key(left), _general_ci_key(right)
    return (a > b) - (a < b)


def _utf8mb4_bin(left: str, right: str) -> int:
    a, b = left.rstrip(" "), right.rstrip(" ")
    return (a > b) - (a < b)


def _syntax_error(sql: str) -> SimError:
    near = sql[:40]
    return SimError(
        ER_PARSE,
        "You have an error in your SQL syntax; check the manual that corresponds to your OceanBase "
        f"version for the right syntax to use near '{mask_secrets(near)}' at line 1",
    )


def _call_arguments(text: str, sql: str) -> list[tuple[str | None, str | None]]:
    """Arguments of a CALL: `'x'`, `NAME => 'x'`, numbers and NULL."""
    arguments: list[tuple[str | None, str | None]] = []
    pattern = re.compile(r"\s*(?:(\w+)\s*=>\s*)?(" + _STRING[1:-1] + r"|-?\d+(?:\.\d+)?|NULL)\s*(,|$)", re.IGNORECASE)
    position = 0
    text = text.strip()
    while position < len(text):
        match = pattern.match(text, position)
        if not match:
            raise _syntax_error(sql)
        name, value = match.group(1), match.group(2)
        if value.upper() == "NULL":
            parsed: str | None = None
        elif value.startswith("'"):
            parsed = _unquote(value)
        else:
            parsed = value
        arguments.append((name.upper() if name else None, parsed))
        position = match.end()
    return arguments


def _bind(procedure: str, spec: tuple[str, ...], args: list[tuple[str | None, str | None]], sql: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for index, (name, value) in enumerate(args):
        key = name or (spec[index] if index < len(spec) else None)
        if key is None or key not in spec:
            raise SimError(ER_WRONG_ARGUMENTS, f"wrong number or types of arguments in call to '{procedure}'")
        values[key] = value
    missing = _REQUIRED[procedure] - {k for k, v in values.items() if v is not None}
    if missing:
        raise SimError(ER_WRONG_ARGUMENTS, f"wrong number or types of arguments in call to '{procedure}'")
    return values
