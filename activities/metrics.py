"""The product's metrics recorded by the activities, through the SDK's metric meter (exported with the
SDK's own by the worker's Prometheus endpoint; labels are bounded: subtask names, outcomes, error types)."""

from __future__ import annotations

from temporalio import activity

from contracts.verification import DriftKind

# Which part of the system an error type comes from, for `ob_takeover_errors_total{component, type}`.
_COMPONENTS = {
    "Metadb": "metadb",
    "TransactionConflict": "metadb",
    "Credential": "metadb",
    "Host": "ssh",
    "Cluster": "cluster",
    "BadCredentials": "cluster",
    "NotOceanBase": "cluster",
    "UnsupportedVersion": "cluster",
    "TlsRefused": "cluster",
}


def component_of(error_type: str) -> str:
    return next((part for prefix, part in _COMPONENTS.items() if error_type.startswith(prefix)), "task")


def record_subtask(name: str, outcome: str, seconds: float, attempt: int, error_type: str | None) -> None:
    """One attempt of a subtask ended: `outcome` is completed, failed or cancelled."""
    meter = activity.metric_meter()
    labels = {"subtask": name, "outcome": outcome}
    meter.create_counter("ob_takeover_subtasks_total", "Subtask attempts by subtask and outcome").add(1, labels)
    meter.create_histogram_float("ob_takeover_subtask_duration_seconds", "Duration of a subtask attempt", "s").record(
        seconds, labels
    )
    if outcome == "completed":
        meter.create_histogram("ob_takeover_subtask_attempts", "Attempts a subtask took until it completed").record(
            attempt, {"subtask": name}
        )
    if error_type is not None:
        meter.create_counter("ob_takeover_errors_total", "Failures by component and error type").add(
            1, {"component": component_of(error_type), "type": error_type}
        )


def record_verification(cluster: str, kinds: list[str], checked_at: float) -> None:
    """A verification of `cluster` found drifts of `kinds` (one entry per finding): every kind's gauge is set,
    to 0 for the kinds not found, so a drift that was put right drops back to 0."""
    meter = activity.metric_meter()
    drift = meter.create_gauge("ob_takeover_drift", "Drifts the latest verification found, by cluster and kind")
    for kind in DriftKind:
        drift.set(kinds.count(kind.value), {"cluster": cluster, "kind": kind.value})
    meter.create_gauge_float(
        "ob_takeover_verification_timestamp_seconds", "When the cluster was last verified (Unix time)", "s"
    ).set(checked_at, {"cluster": cluster})
