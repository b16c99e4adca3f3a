"""Where a stored credential may be used.

Permission to start a takeover on the task queue is permission to use what the password box holds. So
that a request naming another address cannot send a cluster's root password (or a host's SSH password)
there, every stored credential is bound: a cluster credential to the endpoints it was saved for and, once
a login has shown which cluster answers there, to that cluster's name and id; a host credential to the
hosts it names, which it must name when host keys are trusted on first use.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from contracts.errors import CredentialMisuse
from metadb.credentials import Credential


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


def _bind_hint(credential: Credential, option: str) -> str:
    return f"ob-takeover credential bind {credential.id} {option}"


def check_endpoint(credential: Credential, where: str, record: Sequence[str] = ()) -> None:
    """Refuse a cluster credential at an endpoint (`endpoint_key` form) it is not bound to. `record` is the
    endpoint of the managed cluster the credential belongs to, for credentials stored before bindings existed."""
    allowed = credential.endpoints or tuple(record)
    if not allowed:
        raise CredentialMisuse(
            f"credential {credential.id} ({credential.name}) is bound to no endpoint, so it is used nowhere; "
            f"name its cluster's endpoints: {_bind_hint(credential, '--endpoint ADDRESS:PORT')}"
        )
    if where not in allowed:
        raise CredentialMisuse(
            f"credential {credential.id} ({credential.name}) logs in only at {', '.join(allowed)}, not at {where}; "
            f"if {where} is the same cluster, add it: {_bind_hint(credential, '--endpoint ' + where)}"
        )


def check_cluster(credential: Credential, where: str, cluster_key: str, bound: str) -> None:
    """Refuse a cluster credential bound to cluster `bound` when the cluster answering at `where` is another."""
    if bound != cluster_key:
        raise CredentialMisuse(
            f"credential {credential.id} ({credential.name}) belongs to cluster {bound}, but the cluster at "
            f"{where} is {cluster_key}; use that cluster's own credential"
        )


def check_host(credential: Credential, ip: str, *, trust_on_first_use: bool, key_known: bool) -> None:
    """Refuse a host credential for a host it does not name; under trust on first use, a credential that
    names no hosts is refused for a host whose key is not on record (whatever answers there would get it)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise CredentialMisuse(
            f"the cluster lists host {ip!r}, which is not an IP address: no login", node=ip
        ) from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            raise CredentialMisuse(f"host {ip} carries a zone id: no login", node=ip)
        address = address.ipv4_mapped or address
    networks = [ipaddress.ip_network(pattern, strict=False) for pattern in credential.hosts]
    if networks:
        if not any(address in network for network in networks):
            raise CredentialMisuse(
                f"credential {credential.id} ({credential.name}) logs in only to {', '.join(credential.hosts)}, "
                f"not to {ip}; if {ip} is one of its hosts, add it: {_bind_hint(credential, '--hosts ' + ip)}",
                node=ip,
            )
        exact = ipaddress.ip_network(address) in networks
        if trust_on_first_use and not key_known and credential.secret_type == "password" and not exact:
            # A key login gives an unknown host nothing it can replay; a password goes to whoever answers.
            raise CredentialMisuse(
                f"credential {credential.id} ({credential.name}) is a password, and with host_key_policy tofu "
                f"the key of {ip} is not on record: a password goes only to hosts named one by one, not by a "
                f"network; add it: {_bind_hint(credential, '--hosts ' + ip)}, or use a key credential",
                node=ip,
            )
    elif trust_on_first_use and not key_known:
        raise CredentialMisuse(
            f"credential {credential.id} ({credential.name}) names no hosts, and with host_key_policy tofu the "
            "key of this host is not on record: its password would go to whatever answers here. Name the hosts "
            f"it is for: {_bind_hint(credential, '--hosts 10.0.0.0/24')} (addresses or networks), or use "
            "host_key_policy known_hosts",
            node=ip,
        )
