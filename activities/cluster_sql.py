"""Every statement the takeover sends to the sys tenant, built by pure functions, and the parsers
of their answers. Activities run these; the plan preview shows them (secrets masked)."""

from __future__ import annotations

import re
from typing import Any

MONITOR_USER = "ocp_monitor"
PROXYRO_USER = "proxyro"
RESOURCE_PLAN = "OB_TAKEOVER_MONITOR_PLAN"
CONSUMER_GROUP = "OB_TAKEOVER_MONITOR_GROUP"
# Monitoring queries may use at most this share of the sys tenant's CPU.
MONITOR_UTILIZATION_LIMIT = 20


def quote(value: str) -> str:
    """A MySQL-mode string literal: backslashes, quotes and control characters escaped."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace("'", "\\'")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\x00", "\\0")
        .replace("\x1a", "\\Z")
    )
    return f"'{escaped}'"


def mask(sql: str) -> str:
    """A statement as it may be shown or logged: every password (and password hash) replaced by ***."""
    return re.sub(r"(IDENTIFIED\s+BY\s+(?:PASSWORD\s+)?)'(?:[^'\\]|\\.)*'", r"\1'***'", sql, flags=re.IGNORECASE)


# --- reads -------------------------------------------------------------------------------------

PARAMETER_SQL = "SELECT NAME, VALUE FROM oceanbase.GV$OB_PARAMETERS WHERE NAME = {name} LIMIT 1"
PARAMETERS_SQL = "SELECT NAME, VALUE FROM oceanbase.GV$OB_PARAMETERS WHERE NAME IN ({names})"
# Exactly the account `CREATE USER name` makes: mysql.user compares in utf8mb4_general_ci, where
# `user = 'ocp_monitor'` also finds OCP_MONITOR (another account), so the name is compared as bytes, and the
# host is the default one ('%'), not an account of the same name for other hosts (proven on seekdb).
_ACCOUNT_WHERE = "user = BINARY {user} AND host = '%'"
USER_EXISTS_SQL = "SELECT user FROM mysql.user WHERE " + _ACCOUNT_WHERE
# The stored hash ('*' and 40 hex digits, '' for no password): OceanBase keeps it in `password`.
USER_PASSWORD_SQL = "SELECT password AS PASSWORD FROM mysql.user WHERE " + _ACCOUNT_WHERE
SERVERS_SQL = (
    "SELECT SVR_IP, SVR_PORT, SQL_PORT, ZONE, WITH_ROOTSERVER, STATUS, START_SERVICE_TIME, STOP_TIME, "
    "BUILD_VERSION FROM oceanbase.DBA_OB_SERVERS ORDER BY ZONE, SVR_IP, SVR_PORT"
)
ZONES_SQL = "SELECT ZONE, STATUS, REGION, IDC, TYPE FROM oceanbase.DBA_OB_ZONES ORDER BY ZONE"
RS_LIST_SQL = (
    "SELECT SVR_IP, SVR_PORT, SQL_PORT, ZONE, ROLE FROM oceanbase.CDB_OB_LS_LOCATIONS "
    "WHERE TENANT_ID = 1 AND LS_ID = 1 ORDER BY ZONE, SVR_IP"
)
TENANTS_SQL = (
    "SELECT TENANT_ID, TENANT_NAME, TENANT_TYPE, PRIMARY_ZONE, LOCALITY, COMPATIBILITY_MODE, STATUS, "
    "TENANT_ROLE FROM oceanbase.DBA_OB_TENANTS ORDER BY TENANT_ID"
)
UNIT_CONFIGS_SQL = (
    "SELECT UNIT_CONFIG_ID, NAME, MAX_CPU, MIN_CPU, MEMORY_SIZE, LOG_DISK_SIZE "
    "FROM oceanbase.DBA_OB_UNIT_CONFIGS ORDER BY UNIT_CONFIG_ID"
)
POOLS_SQL = (
    "SELECT RESOURCE_POOL_ID, NAME, UNIT_COUNT, UNIT_CONFIG_ID, ZONE_LIST, TENANT_ID "
    "FROM oceanbase.DBA_OB_RESOURCE_POOLS ORDER BY RESOURCE_POOL_ID"
)
UNITS_SQL = (
    "SELECT UNIT_ID, TENANT_ID, STATUS, RESOURCE_POOL_ID, ZONE, SVR_IP, SVR_PORT "
    "FROM oceanbase.DBA_OB_UNITS ORDER BY UNIT_ID"
)
SERVICE_NOT_READY_SQL = (
    "SELECT COUNT(*) AS NOT_READY FROM oceanbase.DBA_OB_SERVERS "
    "WHERE STATUS != 'ACTIVE' OR STOP_TIME IS NOT NULL OR START_SERVICE_TIME IS NULL"
)
IO_CALIBRATION_SQL = (
    "SELECT STATUS, START_TIME, FINISH_TIME FROM oceanbase.GV$OB_IO_CALIBRATION_STATUS"
    " WHERE SVR_IP = {ip} AND SVR_PORT = {port}"
)
SERVER_STATUS_SQL = "SELECT STATUS FROM oceanbase.DBA_OB_SERVERS WHERE SVR_IP = {ip} AND SVR_PORT = {port}"
ZONE_STATUS_SQL = "SELECT STATUS FROM oceanbase.DBA_OB_ZONES WHERE ZONE = {zone}"
PLAN_EXISTS_SQL = "SELECT PLAN FROM oceanbase.DBA_RSRC_PLANS WHERE PLAN = {plan}"
GROUP_EXISTS_SQL = "SELECT CONSUMER_GROUP FROM oceanbase.DBA_RSRC_CONSUMER_GROUPS WHERE CONSUMER_GROUP = {group}"
DIRECTIVES_SQL = (
    "SELECT PLAN, GROUP_OR_SUBPLAN FROM oceanbase.DBA_RSRC_PLAN_DIRECTIVES WHERE GROUP_OR_SUBPLAN = {group}"
)
MAPPING_SQL = "SELECT CONSUMER_GROUP FROM oceanbase.DBA_RSRC_GROUP_MAPPINGS WHERE ATTRIBUTE = 'USER' AND VALUE = {user}"
ACTIVE_PLAN_SQL = "SELECT @@global.resource_manager_plan AS PLAN"
# Everything "Create resource manager for default user" decides on, in one round trip: the active plan,
# whether the group and the plan exist, whether the plan the group goes in (the active one, else `plan`) has
# a directive for it, and the group the user is mapped to.
RESOURCE_MANAGER_SQL = (
    "SELECT (SELECT COUNT(*) FROM oceanbase.DBA_RSRC_CONSUMER_GROUPS WHERE CONSUMER_GROUP = {group}) AS GROUPS_FOUND, "
    "(SELECT COUNT(*) FROM oceanbase.DBA_RSRC_PLANS WHERE PLAN = {plan}) AS PLANS_FOUND, "
    "(SELECT COUNT(*) FROM oceanbase.DBA_RSRC_PLAN_DIRECTIVES WHERE GROUP_OR_SUBPLAN = {group}"
    " AND PLAN = COALESCE(NULLIF(@@global.resource_manager_plan, ''), {plan})) AS DIRECTIVES_FOUND, "
    "(SELECT CONSUMER_GROUP FROM oceanbase.DBA_RSRC_GROUP_MAPPINGS WHERE ATTRIBUTE = 'USER' AND VALUE = {user}"
    " LIMIT 1) AS MAPPED_GROUP, @@global.resource_manager_plan AS ACTIVE_PLAN"
)
OB_VERSION_SQL = "SELECT ob_version() AS VERSION"
# A login succeeds and answers: how a new password is verified.
LOGIN_CHECK_SQL = "SELECT 1 AS OK"


def parameter(name: str) -> str:
    return PARAMETER_SQL.format(name=quote(name))


def user_exists(user: str) -> str:
    return USER_EXISTS_SQL.format(user=quote(user))


def io_calibration_status(ip: str, port: int) -> str:
    return IO_CALIBRATION_SQL.format(ip=quote(ip), port=port)


def server_status(ip: str, port: int) -> str:
    return SERVER_STATUS_SQL.format(ip=quote(ip), port=port)


def zone_status(zone: str) -> str:
    return ZONE_STATUS_SQL.format(zone=quote(zone))


# --- changes -----------------------------------------------------------------------------------


def create_user(user: str, password: str) -> str:
    return f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {quote(password)}"


def alter_user_password(user: str, password: str) -> str:
    return f"ALTER USER {user} IDENTIFIED BY {quote(password)}"


def user_password_hash(user: str) -> str:
    return USER_PASSWORD_SQL.format(user=quote(user))


def show_grants(user: str) -> str:
    return f"SHOW GRANTS FOR {user}"


def create_user_with_hash(user: str, password_hash: str) -> str:
    """A user with a stored hash, exactly: on OceanBase only CREATE USER … IDENTIFIED BY PASSWORD '*…' keeps
    a hash as it is (ALTER USER has no such form, SET PASSWORD and IDENTIFIED WITH … AS hash it again;
    proven on seekdb). No hash: a user without a password."""
    if not password_hash:
        return f"CREATE USER IF NOT EXISTS {user}"
    if not re.fullmatch(r"\*[0-9A-Fa-f]{40}", password_hash):
        raise ValueError("a stored password hash is '*' and 40 hex digits")
    return f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY PASSWORD {quote(password_hash)}"


# OceanBase names the default-host account `'user'`, any other `'user'@'host'`.
_GRANT_LINE = re.compile(
    r"GRANT ([A-Z][A-Z ,]*) ON ((?:\*|`[\w$]+`)\.(?:\*|`[\w$]+`)) TO '([\w$]+)'(?:@'([^']*)')?( WITH GRANT OPTION)?"
)


def grants_from_show(lines: list[str], user: str) -> list[str]:
    """GRANT statements that give `user` (the default-host account, exactly) again what SHOW GRANTS listed
    (USAGE alone gives nothing); a line of another account is refused."""
    statements = []
    for line in lines:
        match = _GRANT_LINE.fullmatch(line.strip())
        if match is None or match.group(3) != user or match.group(4) not in (None, "%"):
            raise ValueError(f"unexpected SHOW GRANTS line for {user}: {line[:120]!r}")
        privileges, target, _, _, option = match.groups()
        if privileges.strip() != "USAGE":
            statements.append(f"GRANT {privileges} ON {target} TO {user}{option or ''}")
    return statements


def drop_user(user: str) -> str:
    return f"DROP USER IF EXISTS {user}"


def grant(privileges: str, target: str, user: str) -> str:
    return f"GRANT {privileges} ON {target} TO {user}"


def set_parameter(name: str, value: str) -> str:
    return f"ALTER SYSTEM SET {name} = {quote(value)}"


RELOAD_SERVER = "ALTER SYSTEM RELOAD SERVER"


def run_io_calibration(ip: str, rpc_port: int) -> str:
    return f"ALTER SYSTEM RUN JOB 'io_calibration' SERVER = {quote(f'{ip}:{rpc_port}')}"


def create_plan(plan: str) -> str:
    return f"CALL DBMS_RESOURCE_MANAGER.CREATE_PLAN(PLAN => {quote(plan)}, COMMENT => 'ob-takeover monitoring')"


def create_consumer_group(group: str) -> str:
    return (
        f"CALL DBMS_RESOURCE_MANAGER.CREATE_CONSUMER_GROUP(CONSUMER_GROUP => {quote(group)}, "
        "COMMENT => 'queries of the monitoring user')"
    )


def create_plan_directive(plan: str, group: str, utilization_limit: int) -> str:
    return (
        f"CALL DBMS_RESOURCE_MANAGER.CREATE_PLAN_DIRECTIVE(PLAN => {quote(plan)}, "
        f"GROUP_OR_SUBPLAN => {quote(group)}, COMMENT => 'limit monitoring', "
        f"UTILIZATION_LIMIT => {int(utilization_limit)})"
    )


def map_user_to_group(user: str, group: str | None) -> str:
    target = quote(group) if group else "NULL"
    return (
        f"CALL DBMS_RESOURCE_MANAGER.SET_CONSUMER_GROUP_MAPPING(ATTRIBUTE => 'USER', VALUE => {quote(user)}, "
        f"CONSUMER_GROUP => {target})"
    )


def delete_plan_directive(plan: str, group: str) -> str:
    return (
        f"CALL DBMS_RESOURCE_MANAGER.DELETE_PLAN_DIRECTIVE(PLAN => {quote(plan)}, GROUP_OR_SUBPLAN => {quote(group)})"
    )


def delete_consumer_group(group: str) -> str:
    return f"CALL DBMS_RESOURCE_MANAGER.DELETE_CONSUMER_GROUP(CONSUMER_GROUP => {quote(group)})"


def delete_plan(plan: str) -> str:
    return f"CALL DBMS_RESOURCE_MANAGER.DELETE_PLAN(PLAN => {quote(plan)})"


def enable_plan(plan: str) -> str:
    return f"SET GLOBAL resource_manager_plan = {quote(plan)}"


# --- parsers -----------------------------------------------------------------------------------


def rs_list_from_locations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The config server's RsList from CDB_OB_LS_LOCATIONS rows of the sys tenant's log stream 1."""
    return [
        {
            "address": f"{row['SVR_IP']}:{int(row['SVR_PORT'])}",
            "role": str(row["ROLE"]),
            "sql_port": int(row["SQL_PORT"]),
        }
        for row in rows
    ]


def rs_list_from_parameter(value: str) -> list[dict[str, Any]]:
    """The RsList from the `rootservice_list` parameter (`ip:rpc_port:sql_port;…`); the first is the leader."""
    entries = []
    for index, item in enumerate(part for part in value.split(";") if part.strip()):
        ip, rpc_port, sql_port = item.strip().rsplit(":", 2)
        entries.append(
            {
                "address": f"{ip}:{int(rpc_port)}",
                "role": "LEADER" if index == 0 else "FOLLOWER",
                "sql_port": int(sql_port),
            }
        )
    return entries


def zone_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": r["ZONE"], "region": r["REGION"] or "", "idc": r["IDC"] or "", "status": r["STATUS"]} for r in rows
    ]


def server_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "ip": r["SVR_IP"],
            "rpc_port": int(r["SVR_PORT"]),
            "sql_port": int(r["SQL_PORT"]),
            "zone": r["ZONE"],
            "status": r["STATUS"],
            "with_rootserver": r["WITH_ROOTSERVER"],
            "build_version": r["BUILD_VERSION"] or "",
        }
        for r in rows
    ]


def tenant_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "tenant_id": int(r["TENANT_ID"]),
            "name": r["TENANT_NAME"],
            "tenant_type": r["TENANT_TYPE"],
            "compatibility_mode": r["COMPATIBILITY_MODE"],
            "status": r["STATUS"],
            "tenant_role": r["TENANT_ROLE"],
            "primary_zone": r["PRIMARY_ZONE"] or "",
            "locality": r["LOCALITY"] or "",
        }
        for r in rows
    ]


def unit_config_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "unit_config_id": int(r["UNIT_CONFIG_ID"]),
            "name": r["NAME"],
            "max_cpu": float(r["MAX_CPU"]),
            "min_cpu": float(r["MIN_CPU"]),
            "memory_size": int(r["MEMORY_SIZE"]),
            "log_disk_size": int(r["LOG_DISK_SIZE"]),
        }
        for r in rows
    ]


def pool_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "resource_pool_id": int(r["RESOURCE_POOL_ID"]),
            "name": r["NAME"],
            "tenant_id": int(r["TENANT_ID"]) if r["TENANT_ID"] is not None else None,
            "unit_count": int(r["UNIT_COUNT"]),
            "unit_config_id": int(r["UNIT_CONFIG_ID"]),
            "zone_list": r["ZONE_LIST"] or "",
        }
        for r in rows
    ]


def unit_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "unit_id": int(r["UNIT_ID"]),
            "tenant_id": int(r["TENANT_ID"]) if r["TENANT_ID"] is not None else None,
            "resource_pool_id": int(r["RESOURCE_POOL_ID"]),
            "zone": r["ZONE"],
            "svr_ip": r["SVR_IP"],
            "svr_port": int(r["SVR_PORT"]),
            "status": r["STATUS"],
        }
        for r in rows
    ]
