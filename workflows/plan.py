"""Expand the subtask table over a cluster's topology into the task's graph of subtasks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.stages import (
    SUBTASKS,
    WAIT_NODE_NAME,
    WAIT_NODE_TIMEOUT_SECONDS,
    FanOut,
    SubtaskDef,
    stage_nodes,
)
from contracts.topology import HostNode, ServerNode, Topology, ZoneNode


@dataclass
class PlannedSubtask:
    """One node of the task graph; `stage` is None for a Wait node."""

    series_id: int
    name: str
    timeout: int
    stage: SubtaskDef | None
    parallel_idx: int = -1
    server: ServerNode | None = None
    host: HostNode | None = None
    zone: ZoneNode | None = None
    upstreams: list[int] = field(default_factory=list)
    downstreams: list[int] = field(default_factory=list)

    @property
    def node_kind(self) -> str:
        return self.stage.fan_out.value if self.stage else FanOut.CLUSTER.value

    @property
    def node(self) -> str | None:
        """Where a fanned-out subtask works: ip:rpc_port, host ip or zone name."""
        if self.server:
            return self.server.label
        if self.host:
            return self.host.ip
        if self.zone:
            return self.zone.name
        return None


def build_plan(topology: Topology, stages: Sequence[SubtaskDef] = SUBTASKS) -> list[PlannedSubtask]:
    """The subtasks of a task (a takeover unless `stages` says otherwise) over `topology`, in series order,
    linked to their neighbours.

    A fan-out stage becomes one subtask per server, host or zone (parallelIdx 0..k-1), all depending
    on the previous group and all followed by one Wait node that the next stage depends on.
    """
    plan: list[PlannedSubtask] = []
    previous: list[int] = []

    def add(subtask: PlannedSubtask) -> int:
        subtask.upstreams = list(previous)
        for upstream in previous:
            plan[upstream].downstreams.append(subtask.series_id)
        plan.append(subtask)
        return subtask.series_id

    for stage in stages:
        if stage.fan_out is FanOut.CLUSTER:
            previous = [add(PlannedSubtask(len(plan), stage.name, stage.timeout, stage))]
            continue
        group = []
        for index, node in enumerate(stage_nodes(stage, topology)):
            subtask = PlannedSubtask(len(plan), stage.name, stage.timeout, stage, index)
            if isinstance(node, ServerNode):
                subtask.server = node
            elif isinstance(node, HostNode):
                subtask.host = node
            elif isinstance(node, ZoneNode):
                subtask.zone = node
            group.append(add(subtask))
        previous = group
        previous = [add(PlannedSubtask(len(plan), WAIT_NODE_NAME, WAIT_NODE_TIMEOUT_SECONDS, None))]
    return plan
