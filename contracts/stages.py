"""The one table that drives a takeover.

Each row is a stage of OCP's "Take over primary OB cluster" DAG, in order. A stage that fans out runs
one subtask per server, host or zone and is followed by a "Wait node" barrier. The workflow, the task
JSON, the activity summaries and the docs' table of steps (docs/steps.md) are all derived from this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contracts.topology import HostNode, ServerNode, Topology, ZoneNode


class FanOut(StrEnum):
    """What a stage runs once for."""

    CLUSTER = "CLUSTER"
    SERVER = "SERVER"
    HOST = "HOST"
    ZONE = "ZONE"


# Every subtask heartbeats, so that a crashed worker is noticed within the heartbeat timeout (at most
# 8 s, and a third of a short subtask's timeout) and the subtask runs again within 10 s of the crash.
HEARTBEAT_TIMEOUT_SECONDS = 8
# The heartbeat timeout of takeovers started before it was shortened (they keep it when they replay).
FIRST_HEARTBEAT_TIMEOUT_SECONDS = 30
WAIT_NODE_NAME = "Wait node"
WAIT_NODE_TIMEOUT_SECONDS = 30
# OCP runs at most this many READY or RUNNING subtasks of one task at a time.
MAX_PARALLEL_SUBTASKS = 10

# Activities that are not subtasks: the workflows schedule them by these names.
LOAD_ENGINE_SETTINGS = "load_engine_settings"
DISCOVER_TOPOLOGY = "discover_topology"
RUN_PRECHECK = "run_precheck"
ALLOCATE_TASK_ID = "allocate_task_id"


@dataclass(frozen=True)
class SubtaskDef:
    """One stage of the takeover: what runs, how long it may take and what undoes it."""

    name: str
    timeout: int
    activity: str
    fan_out: FanOut = FanOut.CLUSTER
    compensation: str | None = None
    prohibit_skip: bool = False
    prohibit_rollback: bool = False
    # Attempts for transient errors (connection lost, metadb down, timeouts), with backoff 1, 2, 4, 8 s;
    # classified errors never retry. All attempts together stay within the subtask's timeout.
    max_attempts: int = 5

    @property
    def heartbeat_timeout(self) -> float:
        return min(HEARTBEAT_TIMEOUT_SECONDS, self.timeout / 3)

    @property
    def first_heartbeat_timeout(self) -> float:
        return min(FIRST_HEARTBEAT_TIMEOUT_SECONDS, self.timeout / 3)


SUBTASKS: tuple[SubtaskDef, ...] = (
    SubtaskDef(
        "Mc lock ob clusters",
        60,
        "acquire_cluster_lock",
        compensation="release_cluster_lock",
        prohibit_skip=True,
    ),
    SubtaskDef("Prepare take over cluster", 30, "prepare_takeover", compensation="remove_cluster_record"),
    SubtaskDef("Reserve host", 1800, "reserve_hosts", compensation="unreserve_hosts"),
    SubtaskDef("Create default user", 180, "create_default_user", compensation="drop_default_user"),
    SubtaskDef("Register config url", 60, "register_config_url", compensation="restore_config_url"),
    SubtaskDef("Run io calibration", 1800, "run_io_calibration", FanOut.SERVER),
    SubtaskDef(
        "Record root service list",
        60,
        "record_root_service_list",
        compensation="remove_root_service_list",
    ),
    SubtaskDef("Wait cluster accessible", 1200, "wait_cluster_accessible"),
    SubtaskDef(
        "Update server process info",
        5000,
        "update_server_process_info",
        FanOut.SERVER,
        compensation="remove_server_process_info",
    ),
    SubtaskDef(
        "Attach cluster attributes",
        1800,
        "attach_cluster_attributes",
        compensation="detach_cluster_attributes",
    ),
    SubtaskDef(
        "Refresh ocp agent config",
        3600,
        "refresh_agent_config",
        FanOut.HOST,
        compensation="restore_agent_config",
    ),
    SubtaskDef(
        "Active agent modules",
        1800,
        "activate_agent_modules",
        FanOut.HOST,
        compensation="deactivate_agent_modules",
    ),
    SubtaskDef("Sync cluster info", 60, "sync_cluster_info", compensation="remove_cluster_info"),
    SubtaskDef("Sync all tenant information", 300, "sync_tenant_info", compensation="remove_tenant_info"),
    # The previous proxyro password cannot be read back, so this step cannot be undone.
    SubtaskDef(
        "Set proxyro password to sys tenant",
        600,
        "set_proxyro_password",
        prohibit_rollback=True,
    ),
    SubtaskDef("Update observer status", 300, "update_observer_status", FanOut.SERVER, prohibit_skip=True),
    SubtaskDef("Update zone status", 1800, "update_zone_status", FanOut.ZONE, prohibit_skip=True),
    SubtaskDef("Update OB cluster status", 30, "update_cluster_status", prohibit_skip=True),
    SubtaskDef(
        "Create resource manager for default user",
        180,
        "create_resource_manager",
        compensation="drop_resource_manager",
    ),
    SubtaskDef("Mc unlock ob clusters", 60, "release_cluster_lock", prohibit_skip=True),
)

LOCK_STAGE = SUBTASKS[0]
UNLOCK_STAGE = SUBTASKS[-1]

# Releasing a cluster from management: the takeover's work undone in reverse order, data untouched. Once
# the agents are touched there is no way back but forward (retry or skip).
RELEASE_TASK_NAME = "Move out OB cluster"
DESCRIBE_MANAGED_CLUSTER = "describe_managed_cluster"
RELEASE_SUBTASKS: tuple[SubtaskDef, ...] = (
    SubtaskDef(
        "Mc lock ob clusters", 60, "acquire_cluster_lock", compensation="release_cluster_lock", prohibit_skip=True
    ),
    SubtaskDef("Prepare move out cluster", 30, "prepare_release", compensation="resume_management", prohibit_skip=True),
    SubtaskDef("Delete resource manager for default user", 180, "drop_resource_manager", prohibit_rollback=True),
    SubtaskDef("Inactive agent modules", 600, "deactivate_agent_modules", FanOut.HOST, prohibit_rollback=True),
    SubtaskDef("Restore ocp agent config", 600, "restore_agent_config", FanOut.HOST, prohibit_rollback=True),
    SubtaskDef("Restore config url", 60, "restore_config_url", prohibit_rollback=True),
    SubtaskDef("Drop default user", 180, "drop_default_user", prohibit_rollback=True),
    SubtaskDef("Release host", 60, "unreserve_hosts", prohibit_skip=True, prohibit_rollback=True),
    SubtaskDef("Delete cluster info", 60, "remove_cluster_record", prohibit_skip=True, prohibit_rollback=True),
    SubtaskDef("Delete cluster credentials", 60, "remove_cluster_credentials", prohibit_rollback=True),
    SubtaskDef("Mc unlock ob clusters", 60, "release_cluster_lock", prohibit_skip=True),
)


# Verifying a managed cluster, and repairing what drifted: the takeover's own idempotent subtasks, acting for
# its task, between the lock and the unlock. A repair has nothing of its own to undo (it puts back what the
# takeover set), so its stages carry no compensation: a rollback of a repair only releases the lock, and
# never runs the takeover's compensations (they would undo the takeover itself).
REPAIR_TASK_NAME = "Repair OB cluster"
DESCRIBE_VERIFY_TARGET = "describe_verify_target"
VERIFY_MANAGED_CLUSTER = "verify_managed_cluster"
# The takeover subtasks a repair may run, in the takeover's order.
REPAIRABLE_ACTIVITIES = (
    "create_default_user",
    "register_config_url",
    "update_server_process_info",
    "refresh_agent_config",
    "activate_agent_modules",
    "sync_cluster_info",
)
# A server that joined after the takeover is adopted as the takeover adopts its servers: the takeover's
# precheck items on its host, its host registered (with the takeover's hostInfo) and reserved, then the
# takeover's own subtasks for it. A finding names the whole adoption by this name.
ADOPT_SERVER = "Adopt new server"
ADOPTION_STAGES: tuple[SubtaskDef, ...] = (
    # Nothing is written before every item passes: skipping it would adopt an unchecked host.
    SubtaskDef("Precheck new servers", 300, "precheck_new_servers", prohibit_skip=True),
    SubtaskDef("Reserve new hosts", 1800, "reserve_new_hosts"),
)
ADOPTION_SUBTASKS = (
    *(stage.name for stage in ADOPTION_STAGES),
    "Update server process info",
    "Refresh ocp agent config",
    "Active agent modules",
    "Sync cluster info",
)


def _without_compensation(stage: SubtaskDef) -> SubtaskDef:
    return SubtaskDef(stage.name, stage.timeout, stage.activity, stage.fan_out, None, stage.prohibit_skip, False)


REPAIRABLE_STAGES: dict[str, SubtaskDef] = {
    stage.name: stage
    for stage in (
        *ADOPTION_STAGES,
        *(_without_compensation(stage) for stage in SUBTASKS if stage.activity in REPAIRABLE_ACTIVITIES),
    )
}


def repair_stages(subtask_names: set[str]) -> tuple[SubtaskDef, ...]:
    """A repair task's table: the lock, the named takeover subtasks (an adoption's, for `ADOPT_SERVER`) in
    the takeover's order, the unlock."""
    unknown = subtask_names - set(REPAIRABLE_STAGES) - {ADOPT_SERVER}
    if unknown:
        raise ValueError(f"not a repairing subtask: {sorted(unknown)}")
    if ADOPT_SERVER in subtask_names:
        subtask_names = (subtask_names - {ADOPT_SERVER}) | set(ADOPTION_SUBTASKS)
    named = tuple(stage for name, stage in REPAIRABLE_STAGES.items() if name in subtask_names)
    return (LOCK_STAGE, *named, UNLOCK_STAGE)


def repair_fan_out(repair: str) -> FanOut:
    """What the repair a finding names runs once for (an adoption: the new server)."""
    return FanOut.SERVER if repair == ADOPT_SERVER else REPAIRABLE_STAGES[repair].fan_out


def stage_nodes(
    stage: SubtaskDef, topology: Topology
) -> list[ServerNode] | list[HostNode] | list[ZoneNode] | list[None]:
    """Where a stage runs: each server, host or zone it fans out over, or once (None) for the cluster."""
    if stage.fan_out is FanOut.SERVER:
        return list(topology.servers)
    if stage.fan_out is FanOut.HOST:
        return list(topology.hosts)
    if stage.fan_out is FanOut.ZONE:
        return list(topology.zones)
    return [None]


def activity_names() -> list[str]:
    """Every activity a takeover, a release or a repair may schedule: subtask work and compensations, without
    repeats."""
    names: list[str] = []
    for stage in (*SUBTASKS, *RELEASE_SUBTASKS, *ADOPTION_STAGES):
        for name in (stage.activity, stage.compensation):
            if name and name not in names:
                names.append(name)
    return names


def steps_table_markdown() -> str:
    """The table of takeover steps in docs/steps.md, generated from SUBTASKS (a test keeps them equal)."""
    rows = [
        "| # | subtask | runs once per | timeout (s) | activity | rollback | skip |",
        "|---|---|---|---:|---|---|---|",
    ]
    for number, stage in enumerate(SUBTASKS, start=1):
        per = stage.fan_out.value.lower() + (" + Wait node" if stage.fan_out is not FanOut.CLUSTER else "")
        rollback = (
            "prohibited" if stage.prohibit_rollback else (f"`{stage.compensation}`" if stage.compensation else "-")
        )
        skip = "prohibited" if stage.prohibit_skip else "allowed"
        cells = [str(number), stage.name, per, str(stage.timeout), f"`{stage.activity}`", rollback, skip]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def mermaid_diagram() -> str:
    """The takeover DAG as a Mermaid flowchart, generated from SUBTASKS (a test keeps docs/steps.md's equal)."""
    lines = ["flowchart TD"]
    previous: str | None = None
    for number, stage in enumerate(SUBTASKS, start=1):
        node = f"s{number}"
        if stage.fan_out is FanOut.CLUSTER:
            lines.append(f'    {node}["{stage.name}<br/>{stage.timeout}s"]')
        else:
            per = stage.fan_out.value.lower()
            lines.append(f'    {node}[["{stage.name}<br/>one per {per}, {stage.timeout}s"]]')
        if previous:
            lines.append(f"    {previous} --> {node}")
        previous = node
        if stage.fan_out is not FanOut.CLUSTER:
            wait = f"w{number}"
            lines.append(f'    {wait}(("{WAIT_NODE_NAME}"))')
            lines.append(f"    {node} --> {wait}")
            previous = wait
        if stage.prohibit_rollback:
            lines.append(f"    class {node} norollback")
    lines.append("    classDef norollback stroke:#c00,stroke-width:2px")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(mermaid_diagram() if sys.argv[1:] == ["--mermaid"] else steps_table_markdown())
