"""Where a stored credential may be used, and the one place subtasks get passwords from.

Permission to start a takeover on the task queue is permission to use what the password box holds. So
that a request naming another address cannot send a cluster's root password (or a host's SSH password)
there, every stored credential is bound: a cluster credential to the endpoints it was saved for and, once
a login has shown which cluster answers there, to that cluster's name and id; a host credential to the
hosts it names, which it must name when host keys are trusted on first use.

`Credentials` applies those rules: a target is resolved here once per activity (`Work.endpoint`), and
`metadb.credentials` only stores.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from contracts.endpoints import endpoint_key
from contracts.errors import CredentialMisuse, CredentialNotFound
from contracts.target import ClusterTarget
from contracts.topology import ClusterEndpoint
from metadb import clusters
from metadb.credentials import CLUSTER, HOST, Credential, bind_to_cluster, get_credential
from metadb.db import Database
from metadb.vault import Vault


@dataclass(frozen=True)
class Credentials:
    """The password box as subtasks may use it: every credential checked against where it logs in."""

    db: Database
    vault: Vault
    trust_on_first_use: bool = False

    def endpoint(self, endpoint: ClusterEndpoint, cluster_key: str | None = None) -> ClusterEndpoint:
        """The endpoint with root@sys's password, taken from the password box when referenced: only at an
        endpoint the credential is bound to and, with `cluster_key` ("name:obClusterId"), for that cluster."""
        if endpoint.root_sys_password is not None or endpoint.credential_id is None:
            return endpoint
        credential = self.cluster_credential(endpoint.credential_id, endpoint, cluster_key)
        return endpoint.model_copy(update={"root_sys_password": credential.secret})

    def proxyro_password(self, target: ClusterTarget, cluster_key: str | None = None) -> str | None:
        """The target's proxyro password, taken from the password box when referenced; None if it has none."""
        if target.proxyro_credential_id is None:
            return target.proxyro_password
        return self.cluster_credential(target.proxyro_credential_id, target.endpoint, cluster_key).secret

    def bind(self, target: ClusterTarget, cluster_key: str) -> None:
        """Once a login has shown which cluster answers at the target's endpoint: bind the target's stored
        credentials to it, or refuse them if they belong to another cluster."""
        for credential_id in target.credential_ids:
            self.cluster_credential(credential_id, target.endpoint, cluster_key)

    def cluster_credential(
        self, credential_id: int, endpoint: ClusterEndpoint, cluster_key: str | None = None
    ) -> Credential:
        """A cluster credential from the password box, refused where it is not bound."""
        credential = get_credential(self.db, self.vault, credential_id)
        if credential.kind != CLUSTER:
            raise CredentialNotFound(f"credential {credential_id} is not a cluster credential")
        self.check_binding(credential, endpoint, cluster_key)
        return credential

    def check_binding(self, credential: Credential, endpoint: ClusterEndpoint, cluster_key: str | None) -> None:
        """Refuse `credential` at `endpoint` or, with `cluster_key`, for another cluster than the one it is
        bound to (a credential not bound to a cluster yet is bound to `cluster_key` here)."""
        record: list[str] = []
        if not credential.endpoints and credential.cluster_id is not None:
            row = clusters.get_cluster(self.db, credential.cluster_id)
            if row is not None:
                record.append(endpoint_key(row["address"], int(row["port"])))
        check_endpoint(credential, endpoint.where, record)
        bound = credential.bound_cluster
        if cluster_key is None and bound is not None and endpoint.connection_mode == "proxy":
            # Through OBProxy the login's cluster name (and id) picks the cluster: check it before connecting.
            name, _, number = bound.rpartition(":")
            if endpoint.cluster_name != name or endpoint.ob_cluster_id not in (None, int(number)):
                named = f"{endpoint.cluster_name}:{endpoint.ob_cluster_id or '?'}"
                check_cluster(credential, endpoint.where, named, bound)
        if cluster_key is not None:
            bound = bound or bind_to_cluster(self.db, credential.id, cluster_key)
            check_cluster(credential, endpoint.where, cluster_key, bound)

    def host_credential(self, ip: str, credential_id: int, *, key_known: bool) -> Credential:
        """A host credential for the host at `ip`, refused for a host it does not name (`check_host`)."""
        credential = get_credential(self.db, self.vault, credential_id)
        if credential.kind != HOST:
            raise CredentialNotFound(f"{ip}: credential {credential_id} is not a host credential")
        check_host(credential, ip, trust_on_first_use=self.trust_on_first_use, key_known=key_known)
        return credential


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
