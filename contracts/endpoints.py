"""How endpoints and host patterns are written: the stored form of a credential's bindings, and the
parsers of what an operator types."""

from __future__ import annotations

import ipaddress


def endpoint_key(address: str, port: int) -> str:
    """An endpoint as bindings store it: `address:port` (`[v6]:port`)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def parse_endpoint(text: str) -> str:
    """`ADDRESS:PORT` from an operator, in the stored form; ValueError names what is wrong."""
    address, _, port = text.strip().rpartition(":")
    address = address.strip("[]")
    if not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"endpoint {text!r} is not ADDRESS:PORT (e.g. 10.0.0.1:2881)")
    return endpoint_key(address, int(port))


def parse_host_pattern(text: str) -> str:
    """An address or a network (`10.0.0.7`, `10.0.0.0/24`) from an operator; ValueError when it is neither."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise ValueError(f"host {text!r} is not an IP address or a network such as 10.0.0.0/24") from None


def is_loopback_host(host: str) -> bool:
    """Whether `host` (an address or `localhost`) names this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
