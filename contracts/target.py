"""The cluster a task works on, as every subtask receives it: where it answers, which cluster it is, and
the credential ids that log in there."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from contracts.model import Model
from contracts.request import HostInfo, TakeOverRequest
from contracts.topology import ClusterEndpoint, Topology


class TakeoverOptions(Model):
    """What a takeover does beyond reaching the cluster: the request's switches and how to register hosts."""

    switch_config_url: bool = True
    save_to_credential: bool = True
    host_info: HostInfo | None = None

    @classmethod
    def of_request(cls, request: TakeOverRequest) -> TakeoverOptions:
        return cls(
            switch_config_url=request.switch_config_url,
            save_to_credential=request.save_to_credential,
            host_info=request.host_info,
        )


class ClusterTarget(Model):
    """The endpoint and how to log in there, the cluster answering at it (its key `name:obClusterId`, once
    discovered), the metadb's record of it and the task whose work a release undoes.

    Passwords travel by reference: `endpoint.credential_id` for root@sys and `proxyro_credential_id`. Only a
    task started with passwords in its workflow input (a bare `temporal workflow start`, or a takeover started
    before every starter put them in the password box) carries them inline, as its input did.
    """

    endpoint: ClusterEndpoint
    proxyro_credential_id: int | None = None
    proxyro_password: str | None = Field(default=None, repr=False)
    # The cluster that answered at the endpoint: name and obClusterId (None until discovered).
    cluster_name: str | None = None
    ob_cluster_id: int | None = None
    # The metadb's id of the cluster: allocated before the task started, or the one a release releases.
    cluster_id: int | None = None
    # A release: the takeover task whose work the subtasks undo (None: the task's own work).
    owner_task_id: int | None = None

    @classmethod
    def of_request(cls, request: TakeOverRequest, cluster_id: int | None = None) -> ClusterTarget:
        return cls(
            endpoint=ClusterEndpoint.from_request(request),
            proxyro_credential_id=request.proxyro_credential_id,
            proxyro_password=request.proxyro_password,
            cluster_id=cluster_id,
        )

    def discovered(self, topology: Topology) -> ClusterTarget:
        """This target with the cluster that answered at its endpoint."""
        return self.of_cluster(topology.cluster_name, topology.ob_cluster_id)

    def of_cluster(self, cluster_name: str, ob_cluster_id: int) -> ClusterTarget:
        """This target with the cluster `cluster_name`:`ob_cluster_id` answering at its endpoint."""
        return self.model_copy(update={"cluster_name": cluster_name, "ob_cluster_id": ob_cluster_id})

    @property
    def where(self) -> str:
        return self.endpoint.where

    @property
    def name_and_id(self) -> tuple[str, int]:
        """The discovered cluster's name and obClusterId (subtasks always have them)."""
        if self.cluster_name is None or self.ob_cluster_id is None:
            raise ValueError(f"the cluster at {self.where} is not discovered yet")
        return self.cluster_name, self.ob_cluster_id

    @property
    def key(self) -> str:
        """`name:obClusterId` of the cluster, as locks, credential names and bindings spell it."""
        return f"{self.cluster_name}:{self.ob_cluster_id}"

    @property
    def credential_ids(self) -> list[int]:
        """The stored credentials this target logs in with."""
        return [i for i in (self.endpoint.credential_id, self.proxyro_credential_id) if i is not None]


def upgrade_request_payload(data: Any, *, key_fields: bool) -> Any:
    """A payload written before `ClusterTarget` (with the whole takeover request in `request`), in today's
    shape: activities scheduled by an older worker still run after an upgrade."""
    if not isinstance(data, dict) or "request" not in data or "target" in data:
        return data
    legacy = dict(data)
    request = TakeOverRequest.model_validate(legacy.pop("request"))
    target = ClusterTarget.of_request(request, legacy.pop("clusterId", legacy.pop("cluster_id", None)))
    if key_fields:
        update = {
            "cluster_name": legacy.pop("clusterName", legacy.pop("cluster_name", None)),
            "ob_cluster_id": legacy.pop("obClusterId", legacy.pop("ob_cluster_id", None)),
            "owner_task_id": legacy.pop("ownerTaskId", legacy.pop("owner_task_id", None)),
        }
        target = target.model_copy(update=update)
    return {**legacy, "target": target, "options": TakeoverOptions.of_request(request)}
