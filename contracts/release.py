"""Releasing a cluster from management (`ReleaseCluster`): the request and what the worker finds in the
metadb about the cluster to release."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from contracts.model import Model
from contracts.request import FieldError, InvalidRequest, TakeOverRequest, field_path
from contracts.target import ClusterTarget
from contracts.topology import Topology


class ReleaseRequest(Model):
    """`{"clusterId": N}`: the metadb's id of a cluster a takeover brought into management. `configUrl` is the
    obconfig_url to leave the cluster with ("" for none; default: the one it had before the takeover);
    `rootSysCredentialId` names root@sys's password when the takeover did not keep it."""

    model_config = ConfigDict(extra="forbid")

    cluster_id: int = Field(gt=0)
    config_url: str | None = Field(default=None, max_length=2048)
    root_sys_credential_id: int | None = Field(default=None, gt=0)

    @field_validator("config_url")
    @classmethod
    def _check_config_url(cls, value: str | None) -> str | None:
        """Empty, or an http(s) URL: the cluster's servers fetch their root service list from it."""
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
            raise ValueError("must be empty or an http(s) URL of a config server")
        return value


class ReleaseTarget(Model):
    """The managed cluster as the metadb records it: how to reach it (`target`, acting for the takeover task
    whose work is undone), and the topology the takeover recorded (the hosts it reserved), even if the cluster
    cannot be reached."""

    cluster_id: int
    owner_task_id: int
    target: ClusterTarget
    topology: Topology

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """A target recorded with a takeover request (release histories from before `ClusterTarget`)."""
        if not isinstance(data, dict) or "request" not in data or "target" in data:
            return data
        legacy = dict(data)
        request = TakeOverRequest.model_validate(legacy.pop("request"))
        topology = Topology.model_validate(legacy["topology"])
        cluster_id = legacy.get("clusterId", legacy.get("cluster_id"))
        owner = legacy.get("ownerTaskId", legacy.get("owner_task_id"))
        target = ClusterTarget.of_request(request, cluster_id).discovered(topology)
        return {**legacy, "target": target.model_copy(update={"owner_task_id": owner})}


def parse_release_request(body: Any) -> ReleaseRequest:
    """Validate a release body, naming every field that is wrong (values are never echoed)."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            [FieldError(field="body", message=f"must be a JSON object, got {type(body).__name__}")], "release request"
        )
    try:
        return ReleaseRequest.model_validate(body)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "is not a field of the release request"
            errors.append(FieldError(field=field_path(tuple(error["loc"])), message=message))
        raise InvalidRequest(errors, "release request") from None
