"""Stand-in activities for engine tests, registered under the real activity names.

The engine's behaviour (order, fan-out, operator operations, compensation) does not depend on what
an activity does, so these record each call and fail, block or succeed as a test scripts them.
Production workers never register them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.fleet_work import check_fleet_members_activity
from activities.settings import engine_settings_activity
from contracts.fleet import DISCARD_FLEET_MEMBER, FIND_MANAGED, PREPARE_FLEET_MEMBER, MemberStart
from contracts.messages import DiscoverTopologyInput, PreparedTask, SubtaskInput, SubtaskResult
from contracts.settings import load_settings
from contracts.stages import ALLOCATE_TASK_ID, activity_names
from contracts.topology import ServerNode, Topology, ZoneNode


def make_topology(zones: int = 1, servers_per_zone: int = 1, *, name: str = "obcluster") -> Topology:
    servers = [
        ServerNode(ip=f"127.0.{zone + 1}.{index + 2}", rpc_port=2882, sql_port=2881, zone=f"zone{zone + 1}")
        for zone in range(zones)
        for index in range(servers_per_zone)
    ]
    return Topology(
        cluster_name=name,
        ob_cluster_id=1001,
        version="4.2.1.8",
        servers=servers,
        zones=[ZoneNode(name=f"zone{z + 1}", region="region1", idc=f"idc{z + 1}") for z in range(zones)],
    )


@dataclass
class Call:
    activity: str
    node: str | None
    operation: str
    subtask_id: int


@dataclass
class FakeCluster:
    """Scripted behaviour of every takeover activity, and a record of the calls."""

    topology: Topology = field(default_factory=make_topology)
    calls: list[Call] = field(default_factory=list)
    # (activity, node or None for any) -> how many more calls fail
    failures: dict[tuple[str, str | None], int] = field(default_factory=dict)
    # activity name -> event the activity waits for (heartbeating) before it completes
    blockers: dict[str, threading.Event] = field(default_factory=dict)
    # activity name -> seconds it sleeps, without heartbeating
    delays: dict[str, float] = field(default_factory=dict)
    discovery_error: ApplicationError | None = None
    started: dict[str, threading.Event] = field(default_factory=dict)
    running: int = 0
    max_running: int = 0
    allocated: int = 0
    # (address, port) of clusters the fake metadb says are managed already
    managed: set[tuple[str, int]] = field(default_factory=set)
    # task ids of fleet members prepared, and of those whose preparation was undone
    prepared: list[int] = field(default_factory=list)
    discarded: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, activity_name: str, node: str | None = None, times: int = 1) -> None:
        self.failures[(activity_name, node)] = times

    def block(self, activity_name: str) -> threading.Event:
        self.blockers[activity_name] = threading.Event()
        self.started[activity_name] = threading.Event()
        return self.blockers[activity_name]

    def names(self, operation: str | None = None) -> list[str]:
        return [c.activity for c in self.calls if operation is None or c.operation == operation]

    def activities(self) -> list[Callable[..., Any]]:
        fakes: list[Callable[..., Any]] = [
            engine_settings_activity(load_settings()),
            check_fleet_members_activity(),
            self._find_managed(),
            self._allocate(),
            self._discover(),
            *self._prepare_members(),
        ]
        fakes.extend(self._subtask(name) for name in activity_names())
        return fakes

    def _find_managed(self) -> Callable[..., Any]:
        @activity.defn(name=FIND_MANAGED)
        async def find_managed_endpoints(endpoints: list[list[Any]]) -> dict[int, str]:
            return {i: f"cluster at {a}:{p}" for i, (a, p) in enumerate(endpoints) if (a, p) in self.managed}

        return find_managed_endpoints

    def _allocate(self) -> Callable[..., Any]:
        @activity.defn(name=ALLOCATE_TASK_ID)
        async def allocate_task_id() -> int:
            self.allocated += 1
            return 13_089_034 + self.allocated

        return allocate_task_id

    def _prepare_members(self) -> list[Callable[..., Any]]:
        """Fleet members prepared as `metadb.task_starts` does: ids, and the password swapped for an id."""

        @activity.defn(name=PREPARE_FLEET_MEMBER)
        async def prepare_fleet_member(member: MemberStart) -> PreparedTask:
            self.allocated += 1
            task_id = 13_089_034 + self.allocated
            body = member.request.model_dump(mode="json", exclude_none=True)
            if body.pop("rootSysPassword", None) is not None:
                body["rootSysCredentialId"] = task_id
            self.prepared.append(task_id)
            return PreparedTask(task_id=task_id, cluster_id=task_id, workflow_id=member.workflow_id, input=body)

        @activity.defn(name=DISCARD_FLEET_MEMBER)
        async def discard_fleet_member(prepared: PreparedTask) -> None:
            assert prepared.task_id is not None
            self.discarded.append(prepared.task_id)

        return [prepare_fleet_member, discard_fleet_member]

    def _discover(self) -> Callable[..., Any]:
        @activity.defn(name="discover_topology")
        async def discover_topology(arg: DiscoverTopologyInput) -> Topology:
            if self.discovery_error is not None:
                raise self.discovery_error
            return self.topology

        return discover_topology

    def _subtask(self, name: str) -> Callable[..., Any]:
        @activity.defn(name=name)
        async def run(arg: SubtaskInput) -> SubtaskResult:
            node = arg.server.label if arg.server else arg.host.ip if arg.host else arg.zone.name if arg.zone else None
            with self._lock:
                self.calls.append(Call(name, node, arg.operation, arg.subtask_id))
                self.running += 1
                self.max_running = max(self.max_running, self.running)
            try:
                if name in self.started:
                    self.started[name].set()
                await self._behave(name, node)
            finally:
                with self._lock:
                    self.running -= 1
            context = {"clusterId": "5000034"} if name == "prepare_takeover" else {}
            return SubtaskResult(log=[f"{name} done on {node or arg.target.cluster_name}"], context=context)

        return run

    async def _behave(self, name: str, node: str | None) -> None:
        for key in ((name, node), (name, None)):
            if self.failures.get(key, 0) > 0:
                self.failures[key] -= 1
                raise ApplicationError(
                    f"{node or 'cluster'}: injected failure of {name}",
                    type="ClusterSqlError",
                    non_retryable=True,
                )
        if name in self.delays:
            await asyncio.sleep(self.delays[name])
        blocker = self.blockers.get(name)
        while blocker is not None and not blocker.is_set():
            activity.heartbeat()
            await asyncio.sleep(0.1)
