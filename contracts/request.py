"""The takeover request: OCP's `POST /api/v2/ob/clusters/takeOver` body, validated."""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from contracts.errors import INVALID_REQUEST, TakeoverError
from contracts.model import Model

_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_PUBLISH_PORT = re.compile(r"^(\d{1,5}):(\d{1,5})$")


_PROXY_NEEDS_CLUSTER_NAME = "is required when connectionMode is proxy"
_CONTAINER_NEEDS_PORTS = "is required when kind is DEDICATED_CONTAINER"
_ROOT_SECRET_MISSING = "is required unless rootSysCredentialId is given"
_ROOT_SECRET_TWICE = "give rootSysPassword or rootSysCredentialId, not both"
_PROXYRO_SECRET_TWICE = "give proxyroPassword or proxyroCredentialId, not both"


class RequestSecret(NamedTuple):
    """A password field of the request, the credential-id field that replaces it once the password is in
    the password box, and the user the password is for."""

    field: str
    reference: str
    user: str


REQUEST_SECRETS = (
    RequestSecret("rootSysPassword", "rootSysCredentialId", "root@sys"),
    RequestSecret("proxyroPassword", "proxyroCredentialId", "proxyro"),
)
# Every field whose value is never echoed, logged or kept in clear: the request's passwords and those of a
# credential (a password, an SSH private key and its passphrase).
SECRET_FIELDS = frozenset({*(secret.field for secret in REQUEST_SECRETS), "password", "passphrase", "privateKey"})


class ConnectionMode(StrEnum):
    DIRECT = "direct"
    PROXY = "proxy"


class HostKind(StrEnum):
    DEDICATED_PHYSICAL_MACHINE = "DEDICATED_PHYSICAL_MACHINE"
    DEDICATED_CONTAINER = "DEDICATED_CONTAINER"
    DEDICATED_ECS = "DEDICATED_ECS"


class _Body(Model):
    # A field OCP does not know is an error, so that a typo never passes for a default.
    model_config = ConfigDict(extra="forbid")


class HostInfo(_Body):
    """How to register the cluster's hosts that are not managed yet."""

    kind: HostKind = HostKind.DEDICATED_PHYSICAL_MACHINE
    publish_ports: str | None = None
    host_type_id: int = Field(gt=0)
    credential_id: int = Field(gt=0)
    ssh_port: int = Field(default=22, ge=1, le=65535)

    @field_validator("publish_ports")
    @classmethod
    def _check_publish_ports(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for mapping in value.split(","):
            match = _PUBLISH_PORT.match(mapping.strip())
            if not match or not all(1 <= int(port) <= 65535 for port in match.groups()):
                raise ValueError("expected host:container[,…] with ports 1-65535")
        return value

    @model_validator(mode="after")
    def _container_needs_ports(self) -> HostInfo:
        if self.kind is HostKind.DEDICATED_CONTAINER and not self.publish_ports:
            raise ValueError(_CONTAINER_NEEDS_PORTS)
        return self


class TakeOverRequest(_Body):
    """The request body, with OCP's defaults and the two fields obdeploy adds (sshPort, proxyroPassword)."""

    root_sys_password: str | None = Field(default=None, min_length=1, repr=False)
    # The safe alternative to a password in the body: a cluster credential in the password box.
    root_sys_credential_id: int | None = Field(default=None, gt=0)
    address: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    save_to_credential: bool = True
    connection_mode: ConnectionMode = ConnectionMode.DIRECT
    cluster_name: str | None = Field(default=None, min_length=1, max_length=128)
    ob_cluster_id: int | None = Field(default=None, gt=0)
    switch_config_url: bool = True
    host_info: HostInfo | None = None
    proxyro_password: str | None = Field(default=None, min_length=1, repr=False)
    # Instead of proxyroPassword: a cluster credential in the password box (the REST API stores it there).
    proxyro_credential_id: int | None = Field(default=None, gt=0)

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
        labels = value.rstrip(".").split(".")
        if not all(_HOSTNAME_LABEL.match(label) for label in labels) or labels[-1].isdigit():
            raise ValueError("is neither an IPv4 or IPv6 address nor a host name")
        return value

    @model_validator(mode="after")
    def _one_root_secret(self) -> TakeOverRequest:
        if self.root_sys_password is None and self.root_sys_credential_id is None:
            raise ValueError(_ROOT_SECRET_MISSING)
        if self.root_sys_password is not None and self.root_sys_credential_id is not None:
            raise ValueError(_ROOT_SECRET_TWICE)
        return self

    @model_validator(mode="after")
    def _one_proxyro_secret(self) -> TakeOverRequest:
        if self.proxyro_password is not None and self.proxyro_credential_id is not None:
            raise ValueError(_PROXYRO_SECRET_TWICE)
        return self

    @model_validator(mode="after")
    def _proxy_needs_cluster_name(self) -> TakeOverRequest:
        if self.connection_mode is ConnectionMode.PROXY and not self.cluster_name:
            raise ValueError(_PROXY_NEEDS_CLUSTER_NAME)
        return self

    @property
    def endpoint(self) -> str:
        """The cluster endpoint as host:port, with IPv6 addresses bracketed."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


class FieldError(BaseModel):
    field: str
    message: str


class InvalidRequest(TakeoverError, ValueError):
    """A request body that breaks one or more rules; `errors` names every field at once."""

    def __init__(self, errors: list[FieldError], what: str = "takeover request") -> None:
        self.errors = errors
        super().__init__(f"invalid {what}: " + "; ".join(f"{e.field}: {e.message}" for e in errors))

    @property
    def type(self) -> str:
        return INVALID_REQUEST


def field_path(location: tuple[int | str, ...]) -> str:
    """Render a pydantic error location with the request's camelCase names."""
    parts = [to_camel(part) if isinstance(part, str) else f"[{part}]" for part in location]
    return ".".join(parts).replace(".[", "[") or "body"


def _cross_field_errors(body: dict[str, Any]) -> list[FieldError]:
    """The rules that tie two fields together, checked on the raw body.

    Pydantic skips model-level rules once a field fails; checking them here as well lets one answer
    list every violation.
    """
    errors = []
    if "rootSysPassword" not in body and "rootSysCredentialId" not in body:
        errors.append(FieldError(field="rootSysPassword", message=_ROOT_SECRET_MISSING))
    if "rootSysPassword" in body and "rootSysCredentialId" in body:
        errors.append(FieldError(field="rootSysCredentialId", message=_ROOT_SECRET_TWICE))
    if "proxyroPassword" in body and "proxyroCredentialId" in body:
        errors.append(FieldError(field="proxyroCredentialId", message=_PROXYRO_SECRET_TWICE))
    if body.get("connectionMode") == "proxy" and not body.get("clusterName"):
        errors.append(FieldError(field="clusterName", message=_PROXY_NEEDS_CLUSTER_NAME))
    host_info = body.get("hostInfo")
    if (
        isinstance(host_info, dict)
        and host_info.get("kind") == HostKind.DEDICATED_CONTAINER.value
        and not host_info.get("publishPorts")
    ):
        errors.append(FieldError(field="hostInfo.publishPorts", message=_CONTAINER_NEEDS_PORTS))
    return errors


def parse_request(body: Any) -> TakeOverRequest:
    """Validate a raw request body, reporting every violation with the field it concerns.

    Error messages never echo the submitted values, so a password sent in the wrong field is not
    repeated in an error that ends up in logs or in the workflow history.
    """
    if not isinstance(body, dict):
        raise InvalidRequest([FieldError(field="body", message=f"must be a JSON object, got {type(body).__name__}")])
    try:
        return TakeOverRequest.model_validate(body)
    except ValidationError as exc:
        errors: list[FieldError] = []
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
            if error["type"] == "value_error" and error["msg"].endswith(
                (
                    _PROXY_NEEDS_CLUSTER_NAME,
                    _CONTAINER_NEEDS_PORTS,
                    _ROOT_SECRET_MISSING,
                    _ROOT_SECRET_TWICE,
                    _PROXYRO_SECRET_TWICE,
                )
            ):
                continue  # reported by _cross_field_errors with the field it concerns
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "is not a field of the takeover request"
            errors.append(FieldError(field=field_path(tuple(error["loc"])), message=message))
        errors.extend(_cross_field_errors(body))
        raise InvalidRequest(errors) from None
