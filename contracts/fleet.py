"""A fleet takeover: many clusters taken over by one `TakeOverFleet` workflow, a bounded number at a time.

Each cluster runs as its own `TakeOverCluster` child with the workflow id a single takeover gets, so the
one-takeover-per-cluster rule holds and operators act on a member exactly as on any takeover. The fleet
keeps a table of its members; each member tells the fleet when its status changes.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field

from contracts.engine import workflow_id_for
from contracts.model import Model
from contracts.request import FieldError, InvalidRequest, TakeOverRequest, parse_request
from contracts.task_view import RecordedStatus

MAX_FLEET_SIZE = 5000
# The activity that reads the members' workflows themselves: the fleet checks what signals told it, and
# learns of members that ended without telling it (terminated, or failed outside their code).
CHECK_FLEET_MEMBERS = "check_fleet_members"
# The activity that names the requests whose endpoint is a cluster under management already.
FIND_MANAGED = "find_managed_endpoints"
# The local activities that prepare a member as every takeover is prepared (`metadb.task_starts`: ids, task
# row, passwords into the password box) before the fleet starts it, and undo that when it does not start.
PREPARE_FLEET_MEMBER = "prepare_fleet_member"
DISCARD_FLEET_MEMBER = "discard_fleet_member"
# How often a fleet that heard nothing checks its started members (scaled by the timeout scale).
FLEET_CHECK_SECONDS = 60.0
_FLEET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class MemberStart(Model):
    """A member to prepare: its request, the workflow it starts as, and who started the fleet."""

    request: TakeOverRequest
    workflow_id: str
    creator: str


class MemberStatus(StrEnum):
    """Where a member stands: its task's `ObTaskStatus` (a `RecordedStatus`; a member is never REJECTED)
    plus the fleet's own states."""

    PENDING = "PENDING"  # not started yet: waiting for a slot
    CREATING = RecordedStatus.CREATING.value
    RUNNING = RecordedStatus.RUNNING.value
    # A subtask failed: the member waits for an operator on its own workflow.
    FAILED = RecordedStatus.FAILED.value
    SUCCESSFUL = RecordedStatus.SUCCESSFUL.value
    ROLLING_BACK = RecordedStatus.ROLLING_BACK.value
    ROLLBACK_FAILED = RecordedStatus.ROLLBACK_FAILED.value
    ROLLED_BACK = RecordedStatus.ROLLED_BACK.value
    ABORTED = RecordedStatus.ABORTED.value
    # The member's workflow ended without a task (bad password, unreachable cluster, …) or could not start.
    NOT_STARTED = "NOT_STARTED"


# Statuses after which a member's workflow has ended: it never changes again.
CLOSED = frozenset({MemberStatus.SUCCESSFUL, MemberStatus.ROLLED_BACK, MemberStatus.ABORTED, MemberStatus.NOT_STARTED})
# Statuses in which a member's work runs and takes one of the fleet's `maxConcurrent` slots. A FAILED member
# waits for an operator and gives its slot to the next cluster.
WORKING = frozenset({MemberStatus.CREATING, MemberStatus.RUNNING, MemberStatus.ROLLING_BACK})


class FleetRequest(Model):
    """What `ob-takeover fleet start` and the Python client send: the clusters' takeover bodies and how many
    may run at once."""

    requests: list[TakeOverRequest] = Field(min_length=1, max_length=MAX_FLEET_SIZE)
    max_concurrent: int = Field(default=10, ge=1, le=1000)


class FleetMember(Model):
    """One row of the fleet table."""

    index: int
    workflow_id: str
    endpoint: str
    status: MemberStatus = MemberStatus.PENDING
    cluster_name: str | None = None
    task_id: int | None = None
    # The first FAILED subtask, as "name · node", while the member is FAILED.
    failed_subtask: str | None = None
    message: str | None = None
    # The member's run, once started; a closed status is `confirmed` once the fleet saw the run end.
    run_id: str | None = None
    confirmed: bool = False

    @property
    def done(self) -> bool:
        return self.status in CLOSED and self.confirmed


class MemberUpdate(Model):
    """The signal a member sends its fleet when its status changes (`seq` orders a run's updates), and
    what the check of the members' workflows reports (`confirmed`)."""

    workflow_id: str
    status: MemberStatus
    seq: int
    run_id: str | None = None
    confirmed: bool = False
    cluster_name: str | None = None
    task_id: int | None = None
    failed_subtask: str | None = None
    message: str | None = None


class FleetView(Model):
    """The fleet's query answer and result: every member's row and the counts by status."""

    max_concurrent: int
    members: list[FleetMember]
    # Which run of the fleet this is (it continues as new to keep its history bounded).
    run: int = 1

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for member in self.members:
            counts[member.status.value] = counts.get(member.status.value, 0) + 1
        return counts

    @property
    def counts_line(self) -> str:
        """The counts as one line: `3 RUNNING, 47 SUCCESSFUL`."""
        return ", ".join(f"{count} {status}" for status, count in sorted(self.counts.items()))

    @property
    def finished(self) -> bool:
        return all(member.done for member in self.members)

    @property
    def working(self) -> bool:
        """Whether a member still waits for its start or works (a FAILED one waits for its operator)."""
        return any(member.status is MemberStatus.PENDING or member.status in WORKING for member in self.members)


class FleetState(Model):
    """What a fleet run hands the next one when it continues as new: the table and the bodies of the
    members not started yet (started ones need theirs no more)."""

    max_concurrent: int
    members: list[FleetMember]
    pending: dict[int, TakeOverRequest]
    run: int
    seqs: dict[str, int] = Field(default_factory=dict)


def parse_fleet_request(body: Any) -> FleetRequest:
    """Validate a fleet body `{"requests": [takeover bodies], "maxConcurrent": N}`; a cluster's error names it
    by position (`requests[3].address`). Two requests for one endpoint are refused: a cluster is taken over
    once."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            [FieldError(field="body", message=f"must be a JSON object, got {type(body).__name__}")], "fleet request"
        )
    errors: list[FieldError] = []
    clusters = body.get("requests")
    parsed: list[TakeOverRequest] = []
    if not isinstance(clusters, list) or not clusters:
        errors.append(FieldError(field="requests", message="must be a non-empty list of takeover requests"))
    elif len(clusters) > MAX_FLEET_SIZE:
        errors.append(FieldError(field="requests", message=f"at most {MAX_FLEET_SIZE} clusters in one fleet"))
    else:
        seen: dict[str, int] = {}
        for index, cluster in enumerate(clusters):
            try:
                request = parse_request(cluster)
            except InvalidRequest as exc:
                errors.extend(
                    FieldError(field=f"requests[{index}]" + _suffix(error.field), message=error.message)
                    for error in exc.errors
                )
                continue
            workflow_id = workflow_id_for(request.address, request.port)
            if workflow_id in seen:
                errors.append(
                    FieldError(
                        field=f"requests[{index}]",
                        message=f"takes over {request.endpoint} again (requests[{seen[workflow_id]}] does)",
                    )
                )
            seen.setdefault(workflow_id, index)
            parsed.append(request)
    unknown = sorted(set(body) - {"requests", "maxConcurrent"})
    errors.extend(FieldError(field=name, message="is not a field of the fleet request") for name in unknown)
    max_concurrent = body.get("maxConcurrent", 10)
    if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or not 1 <= max_concurrent <= 1000:
        errors.append(FieldError(field="maxConcurrent", message="must be an integer from 1 to 1000"))
    if errors:
        raise InvalidRequest(errors, "fleet request")
    return FleetRequest(requests=parsed, max_concurrent=max_concurrent)


def check_fleet_name(name: str) -> str:
    """A fleet's name becomes its workflow id (`fleet-NAME`): letters, digits, `_`, `.` and `-`."""
    if not _FLEET_NAME.match(name):
        message = "use 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit"
        raise InvalidRequest([FieldError(field="name", message=message)], "fleet name")
    return name


def _suffix(field: str) -> str:
    return "" if field == "body" else "." + field
