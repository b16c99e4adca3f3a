"""Recorded histories replay against the current workflow code: a change that would break running
takeovers (a non-deterministic edit) fails here. Re-record with OB_TAKEOVER_RECORD_HISTORIES=1 only
for a deliberate, versioned change."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from contracts.messages import SubtaskInput
from contracts.release import ReleaseTarget
from ob_takeover.codec import data_converter
from workflows.fleet import TakeOverFleet
from workflows.release import ReleaseCluster
from workflows.sandbox import workflow_runner
from workflows.takeover import TakeOverCluster
from workflows.verify import VerifyManagedCluster

pytestmark = pytest.mark.unit

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("*.json"))


def test_histories_cover_every_operation() -> None:
    names = {path.stem for path in HISTORIES}
    assert {"success_3x2", "retry_subtask", "skip_subtask", "rollback", "cancel_subtask", "abort"} <= names
    assert {"success_3x2_short_heartbeats", "fleet_6", "fleet_member_retried", "release_2x2"} <= names
    # Recorded with `ClusterTarget` subtask inputs, and fleets whose members are prepared in the metadb.
    assert {"success_3x2_cluster_target", "release_2x2_cluster_target", "fleet_6_prepared_members"} <= names
    assert "fleet_member_prepared_retried" in names
    # A repair that adopts a server that joined after the takeover.
    assert "verify_repair_3x2" in names


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "unsandboxed"])
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path, sandboxed: bool) -> None:
    """In the sandbox, as workers run by default, and without it (`workflow_sandbox = false`)."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(
        workflows=[TakeOverCluster, TakeOverFleet, ReleaseCluster, VerifyManagedCluster],
        data_converter=data_converter(),
        workflow_runner=workflow_runner(sandboxed),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_recorded_activity_payloads_decode_in_todays_shape() -> None:
    """Subtask inputs and release targets written before `ClusterTarget` (the whole request in each) decode
    into today's shape: an activity an older worker scheduled still runs after an upgrade, with the cluster,
    the credential reference and the release's owner task it was given."""
    converter = data_converter()
    decoded = {"subtasks": 0, "releases": 0}
    for name in ("success_3x2", "release_2x2"):
        history = WorkflowHistory.from_json(name, (HISTORIES[0].parent / f"{name}.json").read_text())
        describe_ids = set()
        for event in history.events:
            if event.HasField("activity_task_scheduled_event_attributes"):
                scheduled = event.activity_task_scheduled_event_attributes
                if scheduled.activity_type.name in ("describe_managed_cluster", "discover_topology"):
                    describe_ids.add(event.event_id)
                    continue
                (arg,) = await converter.decode(scheduled.input.payloads, [SubtaskInput])
                assert isinstance(arg, SubtaskInput)
                assert arg.target.cluster_name == "obcluster" and arg.target.ob_cluster_id
                assert arg.target.endpoint.credential_id or arg.target.endpoint.root_sys_password
                assert arg.cluster_key == f"obcluster:{arg.target.ob_cluster_id}"
                if name == "release_2x2":
                    assert arg.target.owner_task_id and arg.target.owner_task_id != arg.task_id
                decoded["subtasks"] += 1
            elif event.HasField("activity_task_completed_event_attributes") and name == "release_2x2":
                completed = event.activity_task_completed_event_attributes
                if completed.scheduled_event_id in describe_ids:
                    (target,) = await converter.decode(completed.result.payloads, [ReleaseTarget])
                    assert isinstance(target, ReleaseTarget)
                    assert target.target.owner_task_id == target.owner_task_id
                    assert target.target.cluster_id == target.cluster_id
                    assert target.target.key == f"{target.topology.cluster_name}:{target.topology.ob_cluster_id}"
                    decoded["releases"] += 1
    assert decoded["subtasks"] > 20 and decoded["releases"] == 1, decoded
