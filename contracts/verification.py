"""Verifying a managed cluster (`VerifyManagedCluster`): what drifted since its takeover, and what repairs it.

A finding names its kind, the node (server `ip:rpc_port`, host ip, zone, or none for the cluster), what the
takeover left and what is there now, and the takeover subtask that puts it right (None: an operator's
call); a server that joined is put right by its adoption (`contracts.stages.ADOPT_SERVER`). Never a password
in a finding: "the password stored by the takeover", "another password".
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from contracts.model import Model
from contracts.release import ReleaseTarget
from contracts.request import FieldError, InvalidRequest, field_path
from contracts.task_view import TaskView
from contracts.topology import ServerNode


class DriftKind(StrEnum):
    SERVER_ADDED = "SERVER_ADDED"
    SERVER_REMOVED = "SERVER_REMOVED"
    SERVER_NOT_ACTIVE = "SERVER_NOT_ACTIVE"
    ZONE_NOT_ACTIVE = "ZONE_NOT_ACTIVE"
    CONFIG_URL_CHANGED = "CONFIG_URL_CHANGED"
    MONITOR_USER_MISSING = "MONITOR_USER_MISSING"
    MONITOR_PASSWORD_CHANGED = "MONITOR_PASSWORD_CHANGED"
    AGENT_CONFIG_CHANGED = "AGENT_CONFIG_CHANGED"
    AGENT_MODULES_INACTIVE = "AGENT_MODULES_INACTIVE"
    HOST_KEY_CHANGED = "HOST_KEY_CHANGED"
    HOST_UNREACHABLE = "HOST_UNREACHABLE"
    CLUSTER_UNREACHABLE = "CLUSTER_UNREACHABLE"


class Finding(Model):
    """One drift: what the takeover left (`expected`) and what is there now (`found`); `repair` is the name
    of the takeover subtask that puts it back, or None when only an operator can (start a server, check a
    host's new key)."""

    kind: DriftKind
    node: str | None = None
    expected: str
    found: str
    repair: str | None = None
    # SERVER_ADDED: the server as the cluster lists it now, the one its adoption takes into management.
    server: ServerNode | None = None


class VerificationReport(Model):
    """A verification of one managed cluster: when, how long it took, and every drift found (none: clean)."""

    cluster_id: int
    cluster_name: str
    checked_at: str
    seconds: float
    findings: list[Finding] = Field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def repairable(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.repair]


class VerifyRequest(Model):
    """`{"clusterId": N, "repair": false}`: verify managed cluster N; with `repair`, run the subtasks that
    put right what drifted, as a task, then verify again."""

    model_config = ConfigDict(extra="forbid")

    cluster_id: int = Field(gt=0)
    repair: bool = False


class VerifyInput(Model):
    """What the verification activity reads: the managed cluster as the metadb records it."""

    managed: ReleaseTarget


class VerificationResult(Model):
    """`VerifyManagedCluster`'s result: the report; with a repair, its task and the report after it."""

    report: VerificationReport
    repair_task: TaskView | None = None
    after_repair: VerificationReport | None = None

    @property
    def final(self) -> VerificationReport:
        return self.after_repair or self.report


def parse_verify_request(body: Any) -> VerifyRequest:
    """Validate a verification body, naming every field that is wrong (values are never echoed)."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            [FieldError(field="body", message=f"must be a JSON object, got {type(body).__name__}")],
            "verification request",
        )
    try:
        return VerifyRequest.model_validate(body)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "is not a field of the verification request"
            errors.append(FieldError(field=field_path(tuple(error["loc"])), message=message))
        raise InvalidRequest(errors, "verification request") from None
