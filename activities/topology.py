"""The `discover_topology` activity: what a takeover learns about the cluster before its first subtask."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from activities.facts import read_topology
from activities.failures import project_activity
from activities.runtime import Runtime
from contracts.messages import DiscoverTopologyInput
from contracts.stages import DISCOVER_TOPOLOGY
from contracts.topology import Topology


def discover_topology_activity(runtime: Runtime) -> Callable[..., Any]:
    """The `discover_topology` activity; a password kept in the password box is read there."""

    @project_activity(DISCOVER_TOPOLOGY)
    async def discover_topology(arg: DiscoverTopologyInput) -> Topology:
        """Read the cluster's name, id, version, servers and zones as root@sys."""

        def work() -> Topology:
            credentials = runtime.credentials
            with runtime.cluster(credentials.endpoint(arg.endpoint)) as port:
                topology = read_topology(port)
            if arg.endpoint.credential_id is not None:
                cluster_key = f"{topology.cluster_name}:{topology.ob_cluster_id}"
                credentials.cluster_credential(arg.endpoint.credential_id, arg.endpoint, cluster_key)
            return topology

        return await asyncio.to_thread(work)

    return discover_topology
