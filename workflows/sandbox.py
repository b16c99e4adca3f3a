"""The workflow sandbox every worker and replayer uses.

The workflows' own modules (`workflows.task`, `workflows.plan`, …) are imported inside the sandbox, so
it checks them for non-determinism. The `contracts` package holds only pydantic models, enums and pure
functions: it is passed through, so that a payload's class is the same inside and outside the sandbox
and its models are not rebuilt for every workflow run.

A deployment may run the workflows without the sandbox (`workflow_sandbox = false`): each workflow task
then costs less CPU, and nothing checks the workflows' calls at run time. The replay tests always run
sandboxed and unsandboxed, so a version that passed them is deterministic in both.
"""

from __future__ import annotations

from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions


def workflow_runner(sandboxed: bool = True) -> WorkflowRunner:
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("contracts", "opentelemetry")
    )
