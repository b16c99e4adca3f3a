"""The `discover_topology` activity: what a takeover learns about the cluster before its first subtask."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities.facts import read_topology
from activities.failures import to_application_error
from activities.runtime import Runtime
from contracts.errors import TakeoverError
from contracts.messages import DiscoverTopologyInput
from contracts.stages import DISCOVER_TOPOLOGY
from contracts.topology import Topology


def discover_topology_activity(runtime: Runtime) -> Callable[..., Any]:
    """The `discover_topology` activity; a password kept in the password box is read there."""

    @activity.defn(name=DISCOVER_TOPOLOGY)
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

        try:
            return await asyncio.to_thread(work)
        except TakeoverError as exc:
            raise to_application_error(exc) from None

    return discover_topology
