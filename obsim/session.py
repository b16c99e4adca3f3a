"""What a client's session carries on the simulated sys tenant: the system variables that clients read at
login (values, scopes and what SET takes, as seekdb answers them; resource_manager_plan, which seekdb
lacks, as OceanBase's documentation defines it), and how the session's sql_mode reads string literals.

A session starts with the global values of its variables (a later SET GLOBAL does not reach it) and keeps
what it SETs for itself. Under NO_BACKSLASH_ESCAPES a backslash in a string literal is an ordinary
character, so `'it\\'s'` ends after the backslash.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ER_GLOBAL_VARIABLE = 1229  # SET SESSION of a variable that has no session value
ER_WRONG_VALUE_FOR_VAR = 1231
ER_WRONG_TYPE_FOR_VAR = 1232
ER_INCORRECT_GLOBAL_LOCAL_VAR = 1238  # a read-only variable set, or @@session of one without a session value
ER_UNKNOWN_SYSTEM_VARIABLE = 1193
ER_SESSION_READ_ONLY = 1621  # SET SESSION of a variable whose session value only SET GLOBAL changes

Value = int | str
Scope = Literal["global", "session"]


class VariableError(Exception):
    """A variable statement OceanBase refuses, with its error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class UnterminatedLiteral(ValueError):
    """A string literal with no closing quote (under the session's sql_mode)."""


@dataclass(frozen=True)
class Variable:
    """A system variable: its value before any SET, what it takes, where it lives and whether SET may change it."""

    default: Value
    kind: Literal["text", "int", "bool", "sql_mode", "isolation"] = "text"
    # "session": each session has its own value; "global": only a global one (@@session.x is an error);
    # "global-set": a session value that only SET GLOBAL changes (for new sessions).
    scope: Literal["session", "global", "global-set"] = "session"
    read_only: bool = False


# The sql modes in OceanBase's (MySQL 5.7's) bit order, which is also the order @@sql_mode lists them in.
SQL_MODES = (
    "REAL_AS_FLOAT", "PIPES_AS_CONCAT", "ANSI_QUOTES", "IGNORE_SPACE", "NOT_USED", "ONLY_FULL_GROUP_BY",
    "NO_UNSIGNED_SUBTRACTION", "NO_DIR_IN_CREATE", "POSTGRESQL", "ORACLE", "MSSQL", "DB2", "MAXDB",
    "NO_KEY_OPTIONS", "NO_TABLE_OPTIONS", "NO_FIELD_OPTIONS", "MYSQL323", "MYSQL40", "ANSI",
    "NO_AUTO_VALUE_ON_ZERO", "NO_BACKSLASH_ESCAPES", "STRICT_TRANS_TABLES", "STRICT_ALL_TABLES",
    "NO_ZERO_IN_DATE", "NO_ZERO_DATE", "ALLOW_INVALID_DATES", "ERROR_FOR_DIVISION_BY_ZERO", "TRADITIONAL",
    "NO_AUTO_CREATE_USER", "HIGH_NOT_PRECEDENCE", "NO_ENGINE_SUBSTITUTION", "PAD_CHAR_TO_FULL_LENGTH",
)  # fmt: skip
_FOREIGN = ("PIPES_AS_CONCAT", "ANSI_QUOTES", "IGNORE_SPACE", "NO_KEY_OPTIONS", "NO_TABLE_OPTIONS", "NO_FIELD_OPTIONS")
# What the combination modes stand for, as seekdb lists them (ORACLE and NOT_USED it refuses).
_TRADITIONAL = (
    "STRICT_TRANS_TABLES", "STRICT_ALL_TABLES", "NO_ZERO_IN_DATE", "NO_ZERO_DATE", "ERROR_FOR_DIVISION_BY_ZERO",
    "TRADITIONAL", "NO_AUTO_CREATE_USER", "NO_ENGINE_SUBSTITUTION",
)  # fmt: skip
_COMBINATIONS: dict[str, tuple[str, ...]] = {
    "ANSI": ("REAL_AS_FLOAT", "PIPES_AS_CONCAT", "ANSI_QUOTES", "IGNORE_SPACE", "ANSI"),
    "TRADITIONAL": _TRADITIONAL,
    "POSTGRESQL": _FOREIGN,
    "MSSQL": _FOREIGN,
    "DB2": _FOREIGN,
    "MAXDB": (*_FOREIGN, "MAXDB", "NO_AUTO_CREATE_USER"),
    "MYSQL323": ("MYSQL323", "HIGH_NOT_PRECEDENCE"),
    "MYSQL40": ("MYSQL40", "HIGH_NOT_PRECEDENCE"),
}
_REFUSED_MODES = {"ORACLE", "NOT_USED"}
DEFAULT_SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_AUTO_CREATE_USER"
NO_BACKSLASH_ESCAPES = "NO_BACKSLASH_ESCAPES"
_ISOLATION_LEVELS = ("READ-UNCOMMITTED", "READ-COMMITTED", "REPEATABLE-READ", "SERIALIZABLE")
# Names that are one variable: setting either sets both.
_TWINS = {"tx_isolation": "transaction_isolation", "tx_read_only": "transaction_read_only"}
_TWINS.update({twin: name for name, twin in list(_TWINS.items())})

# What clients read when they log in: MySQL Connector/J (OCP), the mysql and obclient command lines
# (@@version_comment), OCP's agent (SHOW VARIABLES LIKE 'version_comment'), and this product (@@sql_mode,
# @@global.resource_manager_plan). Values as seekdb answers them; version and version_comment are the
# cluster's own (`SystemVariables`).
VARIABLES: dict[str, Variable] = {
    "auto_increment_increment": Variable(1, "int"),
    "autocommit": Variable(1, "bool"),
    "character_set_client": Variable("utf8mb4"),
    "character_set_connection": Variable("utf8mb4"),
    "character_set_database": Variable("utf8mb4"),
    "character_set_results": Variable("utf8mb4"),
    "character_set_server": Variable("utf8mb4"),
    "collation_connection": Variable("utf8mb4_general_ci"),
    "collation_database": Variable("utf8mb4_general_ci"),
    "collation_server": Variable("utf8mb4_general_ci"),
    "have_query_cache": Variable("NO", scope="global", read_only=True),
    "init_connect": Variable("", scope="global"),
    "interactive_timeout": Variable(28800, "int"),
    "license": Variable("", scope="global", read_only=True),
    "lower_case_file_system": Variable(0, "bool", scope="global", read_only=True),
    "lower_case_table_names": Variable(1, "int", scope="global", read_only=True),
    "max_allowed_packet": Variable(16777216, "int", scope="global-set"),
    "net_buffer_length": Variable(16384, "int"),
    "net_read_timeout": Variable(30, "int"),
    "net_write_timeout": Variable(60, "int"),
    "ob_query_timeout": Variable(10000000, "int"),
    "ob_read_consistency": Variable("STRONG"),
    "ob_tcp_invited_nodes": Variable("%", scope="global"),
    "ob_trx_idle_timeout": Variable(86400000000, "int"),
    "ob_trx_lock_timeout": Variable(-1, "int"),
    "ob_trx_timeout": Variable(86400000000, "int"),
    "performance_schema": Variable(0, "bool", scope="global", read_only=True),
    "protocol_version": Variable(10, "int", read_only=True),
    "query_cache_size": Variable(0, "int", scope="global"),
    "query_cache_type": Variable("OFF"),
    "resource_manager_plan": Variable("", scope="global"),
    "sql_mode": Variable(DEFAULT_SQL_MODE, "sql_mode"),
    "system_time_zone": Variable("", scope="global", read_only=True),
    "time_zone": Variable("+08:00"),
    "transaction_isolation": Variable("READ-COMMITTED", "isolation"),
    "transaction_read_only": Variable(0, "bool"),
    "tx_isolation": Variable("READ-COMMITTED", "isolation"),
    "tx_read_only": Variable(0, "bool"),
    "version": Variable("", scope="global", read_only=True),
    "version_comment": Variable("", scope="global", read_only=True),
    "version_compile_machine": Variable("", read_only=True),
    "version_compile_os": Variable("", read_only=True),
    "wait_timeout": Variable(28800, "int"),
}

# How many sessions keep their own values: a session is known by its connection, and nothing tells the
# simulator that a connection ended, so the longest unused ones are forgotten.
_MAX_SESSIONS = 1024


class Default:
    """`SET x = DEFAULT`."""


DEFAULT = Default()
# What SET assigns: text, a number, DEFAULT, or None for NULL.
SetValue = Value | Default | None


def local_utc_offset() -> str:
    """The host's UTC offset as OceanBase shows system_time_zone, e.g. `+08:00`."""
    offset = datetime.now().astimezone().strftime("%z")
    return f"{offset[:3]}:{offset[3:5]}"


def canonical_sql_mode(value: Value | None) -> str:
    """sql_mode as OceanBase keeps it: names or a bit mask, combinations expanded, each once, in bit order;
    1231 for a name it does not know."""
    if value is None:
        return ""
    if isinstance(value, int):
        names = [mode for bit, mode in enumerate(SQL_MODES) if value >> bit & 1]
    else:
        names = [item for item in value.split(",") if item]
    modes: set[str] = set()
    for name in names:
        upper = name.upper()
        if upper not in SQL_MODES or upper in _REFUSED_MODES:
            raise VariableError(ER_WRONG_VALUE_FOR_VAR, f"Variable 'sql_mode' can't be set to the value of '{name}'")
        modes.update(_COMBINATIONS.get(upper, (upper,)))
    return ",".join(mode for mode in SQL_MODES if mode in modes)


def _typed(name: str, variable: Variable, value: Value | None) -> Value:
    """A SET value as the variable keeps it; 1231 or 1232 for one it does not take."""

    def refused() -> VariableError:
        return VariableError(ER_WRONG_VALUE_FOR_VAR, f"Variable '{name}' can't be set to the value of '{value}'")

    if variable.kind == "sql_mode":
        return canonical_sql_mode(value)
    if variable.kind == "bool":
        words = {"ON": 1, "TRUE": 1, "OFF": 0, "FALSE": 0}
        if isinstance(value, int) and value in (0, 1):
            return value
        if isinstance(value, str) and value.upper() in words:
            return words[value.upper()]
        raise refused()
    if variable.kind == "int":
        if not isinstance(value, int):
            raise VariableError(ER_WRONG_TYPE_FOR_VAR, f"Incorrect argument type to variable '{name}'")
        return value
    if variable.kind == "isolation":
        if not isinstance(value, str) or value.upper() not in _ISOLATION_LEVELS:
            raise refused()
        return value.upper()
    return "" if value is None else str(value)


def shown(variable: Variable, value: Value) -> str:
    """A value as SHOW VARIABLES lists it: flags as ON or OFF, numbers as text."""
    if variable.kind == "bool":
        return "ON" if value else "OFF"
    return str(value)


class SystemVariables:
    """The cluster's global values and each session's own."""

    def __init__(self, computed: dict[str, Value]) -> None:
        # Values that are the cluster's own (version, version_comment, system_time_zone).
        self._computed = computed
        # What SET GLOBAL changed; resource_manager_plan is always listed (the product's tests read it).
        self.changed: dict[str, Value] = {"resource_manager_plan": ""}
        self._sessions: OrderedDict[Hashable, dict[str, Value]] = OrderedDict()

    def variable(self, name: str) -> Variable:
        found = VARIABLES.get(name.lower())
        if found is None:
            raise VariableError(ER_UNKNOWN_SYSTEM_VARIABLE, f"Unknown system variable '{name}'")
        return found

    def global_value(self, name: str) -> Value:
        name = name.lower()
        if name in self.changed:
            return self.changed[name]
        return self._computed.get(name, self.variable(name).default)

    def session(self, key: Hashable) -> dict[str, Value]:
        """The session's own values, from the global ones when it is first seen."""
        values = self._sessions.get(key)
        if values is None:
            values = {
                name: self.global_value(name) for name, variable in VARIABLES.items() if variable.scope != "global"
            }
            self._sessions[key] = values
            while len(self._sessions) > _MAX_SESSIONS:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(key)
        return values

    def read(self, key: Hashable, name: str, scope: Scope | None) -> Value:
        """@@name, @@session.name (scope "session") or @@global.name (scope "global")."""
        variable = self.variable(name)
        if variable.scope == "global":
            if scope == "session":
                raise VariableError(ER_INCORRECT_GLOBAL_LOCAL_VAR, f"Variable '{name}' is a GLOBAL variable")
            return self.global_value(name)
        if scope == "global":
            return self.global_value(name)
        return self.session(key)[name.lower()]

    def set(
        self,
        key: Hashable,
        name: str,
        scope: Scope,
        value: SetValue,
        check: Callable[[str, Value], None] | None = None,
    ) -> None:
        """SET [GLOBAL|SESSION] name = value (DEFAULT: the global value, or for GLOBAL the default). `check`
        may refuse a value the variable's type takes (resource_manager_plan names a plan that must exist)."""
        variable = self.variable(name)
        name = name.lower()
        if variable.read_only:
            raise VariableError(ER_INCORRECT_GLOBAL_LOCAL_VAR, f"Variable '{name}' is a read only variable")
        if scope == "session" and variable.scope == "global":
            raise VariableError(
                ER_GLOBAL_VARIABLE, f"Variable '{name}' is a GLOBAL variable and should be set with SET GLOBAL"
            )
        if scope == "session" and variable.scope == "global-set":
            raise VariableError(
                ER_SESSION_READ_ONLY, f"SESSION variable '{name}' is read-only. Use SET GLOBAL to assign the value"
            )
        if isinstance(value, Default):
            typed = self.global_value(name) if scope == "session" else variable.default
        else:
            typed = _typed(name, variable, value)
        if check is not None:
            check(name, typed)
        for each in {name, _TWINS.get(name, name)}:
            if scope == "global":
                self.changed[each] = typed
            else:
                self.session(key)[each] = typed

    def show(self, key: Hashable, scope: Scope, matches: Callable[[str], bool]) -> list[tuple[str, str]]:
        """SHOW [GLOBAL|SESSION] VARIABLES: (name, value) of the variables whose names match, by name."""
        rows = []
        for name in sorted(VARIABLES):
            if matches(name):
                variable = VARIABLES[name]
                value = self.read(key, name, "global" if scope == "global" or variable.scope == "global" else None)
                rows.append((name, shown(variable, value)))
        return rows

    def backslash_escapes(self, key: Hashable) -> bool:
        """Whether the session's string literals take backslash escapes (sql_mode lacks NO_BACKSLASH_ESCAPES)."""
        return NO_BACKSLASH_ESCAPES not in str(self.session(key)["sql_mode"]).split(",")


# --- string literals ---------------------------------------------------------------------------------

_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "%": "\\%", "_": "\\_"}


def rewrite_literals(sql: str, backslash_escapes: bool, emit: Callable[[str], str]) -> str:
    """`sql` with each string literal ('…' or "…") replaced by `emit(its value)`, read as a session with this
    sql_mode reads it; identifiers in backquotes and comments are kept as they are."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            value: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise UnterminatedLiteral(sql)
                d = sql[i]
                if d == "\\" and backslash_escapes and i + 1 < n:
                    value.append(_ESCAPES.get(sql[i + 1], sql[i + 1]))
                    i += 2
                elif d == c and i + 1 < n and sql[i + 1] == c:
                    value.append(c)
                    i += 2
                elif d == c:
                    i += 1
                    break
                else:
                    value.append(d)
                    i += 1
            out.append(emit("".join(value)))
            continue
        if c == "`":
            end = sql.find("`", i + 1)
            end = n - 1 if end < 0 else end
            out.append(sql[i : end + 1])
            i = end + 1
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n - 2 if end < 0 else end
            out.append(sql[i : end + 2])
            i = end + 2
            continue
        if c == "#" or sql.startswith("-- ", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end])
            i = end
            continue
        out.append(c)
        i += 1
    return "".join(out)


def escaped(value: str) -> str:
    """A literal in the default sql_mode's form (backslash escapes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sqlite_literal(value: str) -> str:
    """A literal in SQLite's form (quotes doubled, backslashes plain)."""
    return "'" + value.replace("'", "''") + "'"


def unquote(literal: str, backslash_escapes: bool = True) -> str:
    """The value of one string literal."""
    values: list[str] = []

    def keep(value: str) -> str:
        values.append(value)
        return ""

    rest = rewrite_literals(literal, backslash_escapes, keep)
    if rest.strip() or len(values) != 1:
        raise UnterminatedLiteral(literal)
    return values[0]
