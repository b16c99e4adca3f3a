"""TLS for the MySQL-protocol connections the project opens: to clusters and to a MySQL metadb.

Modes, as MySQL clients name them: `off` (plaintext), `preferred` (TLS when the server offers it,
certificate not checked: against eavesdropping only), `required` (TLS or no connection, certificate not
checked), `verify_ca` (the certificate must be signed by the CA) and `verify_identity` (and name the host).
"""

from __future__ import annotations

import functools
import ssl
from typing import Literal

TlsMode = Literal["off", "preferred", "required", "verify_ca", "verify_identity"]
TLS_MODES: tuple[TlsMode, ...] = ("off", "preferred", "required", "verify_ca", "verify_identity")


def tls_required(mode: str) -> bool:
    """Whether a connection without TLS must be refused."""
    return mode in ("required", "verify_ca", "verify_identity")


@functools.cache
def tls_context(mode: str, ca_file: str = "", cert_file: str = "", key_file: str = "") -> ssl.SSLContext | None:
    """The client TLS context for `mode` (None for `off`); built once per set of arguments."""
    if mode not in TLS_MODES:
        raise ValueError(f"TLS mode {mode!r} is not one of {', '.join(TLS_MODES)}")
    if mode == "off":
        return None
    if mode in ("verify_ca", "verify_identity"):
        context = ssl.create_default_context(cafile=ca_file or None)
        context.check_hostname = mode == "verify_identity"
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context
