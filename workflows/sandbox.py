"""The workflow sandbox every worker and replayer uses.

The workflows' own modules (`workflows.task`, `workflows.plan`, …) are imported inside the sandbox, so
it checks them for non-determinism. The `contracts` package holds only pydantic models, enums and pure
functions: it is passed through, so that a payload's class is the same inside and outside the sandbox
and its models are not rebuilt for every workflow run.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("contracts", "opentelemetry")
    )
