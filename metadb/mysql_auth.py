"""How every MySQL-protocol connection of the project logs in (clusters, a MySQL metadb): with the
password never leaving the process except as a native-password scramble, unless TLS with a checked
certificate protects it.

A server may ask for another authentication plugin. Those that send the password itself
(`mysql_clear_password`, `dialog`) or encrypt it to a public key the server hands out (`sha256_password`,
the full authentication of `caching_sha2_password`) are refused on a connection without verified TLS:
whoever answers at the address (a fake cluster, a man in the middle) would otherwise get the password.
`caching_sha2_password`'s fast path (a scramble, as the native one) is allowed.
"""

from __future__ import annotations

import ssl
from typing import Any

import pymysql
from pymysql import _auth

# The client error PyMySQL gives for an authentication plugin it cannot use.
AUTH_PLUGIN_REFUSED = 2059


def verified_tls(connection: Any) -> bool:
    """TLS whose certificate was checked: `preferred` and `required` TLS check none and do not count."""
    context = getattr(connection, "ctx", None)
    return bool(getattr(connection, "_secure", False)) and context is not None and context.verify_mode != ssl.CERT_NONE


def _refused(plugin: str) -> pymysql.err.OperationalError:
    return pymysql.err.OperationalError(
        AUTH_PLUGIN_REFUSED,
        f"the server asked for the password through {plugin} (in clear text, or encrypted to a key of the "
        "server's choosing) on a connection without verified TLS: refused; the password was not sent",
    )


def _roundtrip(connection: Any, data: bytes) -> Any:
    connection.write_packet(data)
    packet = connection._read_packet()
    packet.check_error()
    return packet


class _Guard:
    plugin = ""

    def __init__(self, connection: Any) -> None:
        self.connection = connection


class _ClearText(_Guard):
    """mysql_clear_password and dialog: the password itself, only over verified TLS."""

    def authenticate(self, packet: Any) -> Any:
        if not verified_tls(self.connection):
            raise _refused(self.plugin)
        return _roundtrip(self.connection, self.connection.password + b"\0")


class _ClearPassword(_ClearText):
    plugin = "mysql_clear_password"


class _Dialog(_ClearText):
    plugin = "dialog"


class _Sha256(_Guard):
    plugin = "sha256_password"

    def authenticate(self, packet: Any) -> Any:
        if not verified_tls(self.connection):
            raise _refused(self.plugin)
        return _auth.sha256_password_auth(self.connection, packet)  # type: ignore[no-untyped-call]


class _CachingSha2(_Guard):
    """The fast path (a scramble) always; the full authentication only over verified TLS."""

    plugin = "caching_sha2_password"

    def authenticate(self, packet: Any) -> Any:
        connection = self.connection
        if verified_tls(connection):
            return _auth.caching_sha2_password_auth(connection, packet)
        if not connection.password:
            return _roundtrip(connection, b"")
        if packet.is_auth_switch_request():
            salt = packet.read_all()
            connection.salt = salt[:-1] if salt.endswith(b"\0") else salt
            packet = _roundtrip(connection, _auth.scramble_caching_sha2(connection.password, connection.salt))
        if not packet.is_extra_auth_data():
            raise pymysql.err.OperationalError(AUTH_PLUGIN_REFUSED, "caching_sha2_password: unexpected answer")
        packet.advance(1)
        if packet.read_uint8() != 3:  # 3: the scramble was enough; anything else asks for the password
            raise _refused(self.plugin)
        answer = connection._read_packet()
        answer.check_error()
        return answer


class _OldPassword(_Guard):
    plugin = "mysql_old_password"

    def authenticate(self, packet: Any) -> Any:
        raise pymysql.err.OperationalError(AUTH_PLUGIN_REFUSED, "mysql_old_password is refused: it is broken")


AUTH_PLUGIN_MAP: dict[str, Any] = {
    guard.plugin: guard for guard in (_ClearPassword, _Dialog, _Sha256, _CachingSha2, _OldPassword)
}


class GuardedConnection(pymysql.connections.Connection):
    """A PyMySQL connection whose first login packet is always a native-password scramble, so that any
    other plugin comes as an auth switch, through `AUTH_PLUGIN_MAP`."""

    def _get_server_information(self) -> None:
        super()._get_server_information()  # type: ignore[misc]
        self._auth_plugin_name = "mysql_native_password"
