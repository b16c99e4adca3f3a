"""Recorded histories replay against the current workflow code: a change that would break running
takeovers (a non-deterministic edit) fails here. Re-record with OB_TAKEOVER_RECORD_HISTORIES=1 only
for a deliberate, versioned change."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from ob_takeover.codec import data_converter
from workflows.fleet import TakeOverFleet
from workflows.release import ReleaseCluster
from workflows.sandbox import workflow_runner
from workflows.takeover import TakeOverCluster

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("*.json"))


def test_histories_cover_every_operation() -> None:
    names = {path.stem for path in HISTORIES}
    assert {"success_3x2", "retry_subtask", "skip_subtask", "rollback", "cancel_subtask", "abort"} <= names
    assert {"success_3x2_short_heartbeats", "fleet_6", "fleet_member_retried", "release_2x2"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(
        workflows=[TakeOverCluster, TakeOverFleet, ReleaseCluster],
        data_converter=data_converter(),
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
