"""Credentials, for an administrator: listed without their secrets, and SSH credentials of hosts added."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, field_validator
from pydantic.config import JsonDict

from contracts.endpoints import parse_host_pattern
from metadb import credentials
from ob_takeover.api.deps import (
    API,
    AdminCall,
    PageNumber,
    PageOf,
    PageSize,
    answers,
    body_schema,
    json_object,
    parse_body,
)
from ob_takeover.api.envelope import ApiError, SubError, paged

log = logging.getLogger("ob_takeover.api")

router = APIRouter()


# An address or an IPv4 network, as `parse_host_pattern` takes them.
HOST_PATTERN_SCHEMA: JsonDict = {
    "anyOf": [
        {"type": "string", "format": "ipv4"},
        {"type": "string", "format": "ipv6"},
        {"type": "string", "pattern": r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                                      r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/([0-9]|[12][0-9]|3[0-2])$"},
    ]
}  # fmt: skip


class SshCredential(BaseModel):
    type: str = Field(pattern="^(PASSWORD|PRIVATE_KEY)$")
    username: str = Field(min_length=1, max_length=255)
    passphrase: str | None = Field(None, repr=False)
    private_key: str | None = Field(None, alias="privateKey", repr=False)


class CredentialBody(BaseModel):
    target_type: str = Field(alias="targetType", pattern="^HOST$")
    name: str = Field(min_length=1, max_length=255)
    description: str | None = None
    ssh_credential_property: SshCredential = Field(alias="sshCredentialProperty")
    # Not OCP's: the hosts the credential logs in to (addresses or networks). A TASK_MANAGER's takeover may
    # use a host credential only when it names them; an ADMIN's may use any.
    hosts: list[str] = Field(default_factory=list, max_length=1024, json_schema_extra={"items": HOST_PATTERN_SCHEMA})

    @field_validator("hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        return [parse_host_pattern(host) for host in value]


def _credential(row: dict[str, Any]) -> dict[str, Any]:
    kind = {credentials.HOST: "HOST", credentials.CLUSTER: "OB"}.get(row["kind"], row["kind"])
    return {
        "id": row["id"],
        "name": row["name"],
        "targetType": kind,
        "username": row["username"],
        "type": "PRIVATE_KEY" if row["secret_type"] == "private_key" else "PASSWORD",
        "hosts": json.loads(row["hosts"] or "[]"),
        "createTime": row["created_at"],
    }


class Credential(BaseModel):
    id: int
    name: str
    targetType: str = Field(description="HOST (SSH) or OB (a cluster's user)")
    username: str
    type: str = Field(description="PRIVATE_KEY or PASSWORD")
    hosts: list[str]
    createTime: str


@router.get(
    f"{API}/profiles/me/credentials", summary="credentials, never their secrets", responses=answers(PageOf[Credential])
)
async def list_credentials(call: AdminCall, page: PageNumber = 1, size: PageSize = 10) -> Response:
    number = page
    rows = await call.services.metadb(credentials.list_credentials, call.services.db)
    shown = [_credential(row) for row in rows if row["kind"] in (credentials.HOST, credentials.CLUSTER)]
    return call.ok(paged(shown, number, size))


@router.post(
    f"{API}/profiles/me/credentials",
    openapi_extra=body_schema(CredentialBody),
    summary="add an SSH credential (HOST)",
    responses=answers(Credential, conflict=True),
)
async def add_credential(request: Request, call: AdminCall) -> Response:
    body: CredentialBody = parse_body(CredentialBody, await json_object(request))
    ssh = body.ssh_credential_property
    secret, passphrase, secret_type = ssh.passphrase, None, "password"
    if ssh.type == "PRIVATE_KEY":
        secret_type = "private_key"
        # Clients in the field send the key's text in `passphrase` and no key field.
        secret, passphrase = (ssh.private_key, ssh.passphrase) if ssh.private_key else (ssh.passphrase, None)
    if not secret:
        field = "sshCredentialProperty.privateKey" if ssh.type == "PRIVATE_KEY" else "sshCredentialProperty.passphrase"
        raise ApiError(400, f"{field} is required", sub_errors=[SubError(field=field, message="is required")])
    db = call.services.db
    if await call.services.metadb(credentials.describe_credential, db, kind=credentials.HOST, name=body.name):
        raise ApiError(409, f"credential {body.name} exists", sub_errors=[SubError(field="name", message="exists")])
    credential_id = await call.services.metadb(
        credentials.save_credential, db, call.services.vault, kind=credentials.HOST, name=body.name,
        username=ssh.username, secret=secret, secret_type=secret_type, passphrase=passphrase, hosts=body.hosts,
    )  # fmt: skip
    log.info("trace %s: %s added host credential %s", call.trace_id, call.user.name, credential_id)
    row = await call.services.metadb(credentials.describe_credential, db, credential_id=credential_id)
    return call.ok(_credential(row))
