"""`ob-takeover`: the operator command.

Machine-readable output is one JSON object on the last line. Secrets are read from a prompt, stdin
or a file, never from the command line.

One module per command group, as the API has one per resource: each adds its commands to the parser
here and holds their handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from contracts.errors import TakeoverError, TaskConflict, innermost_message
from contracts.settings import CONFIG_ENV, DEFAULT_CONFIG_FILE, SettingsError, load_settings
from ob_takeover.cli import config, fleet, inventory, secrets, serve, tasks, verify
from ob_takeover.cli.console import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, CommandError
from ob_takeover.cli.tasks import task_table

__all__ = ["build_parser", "main", "task_table"]

# In the order `ob-takeover --help` has always listed the commands.
COMMAND_GROUPS = (
    config.add_config_parsers,
    serve.add_serve_parser,
    secrets.add_user_parsers,
    inventory.add_host_type_parsers,
    secrets.add_credential_parsers,
    inventory.add_cluster_parsers,
    inventory.add_host_parsers,
    inventory.add_lock_parsers,
    tasks.add_task_parsers,
    fleet.add_fleet_parsers,
    verify.add_verify_parsers,
    secrets.add_vault_parsers,
)


def build_parser() -> argparse.ArgumentParser:
    """The `ob-takeover` parser: global options, then every command group's commands."""
    parser = argparse.ArgumentParser(prog="ob-takeover", description="Take OceanBase clusters into management.")
    parser.add_argument(
        "--config", help=f"TOML settings file (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG_FILE} if present)"
    )
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_parsers in COMMAND_GROUPS:
        add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one command and exit with its exit code (docs/operators-guide.md, "Exit codes")."""
    args = build_parser().parse_args(argv)
    try:
        args.settings = load_settings(config_file=args.config)
        code = args.handler(args) or EXIT_OK
    except BrokenPipeError:  # `… | head`: the reader has what it wanted
        os._exit(EXIT_OK)
    except Exception as exc:
        message, code = _one_line(exc, getattr(args, "workflow_id", None))
        print(f"ob-takeover: {message}", file=sys.stderr)
        if args.debug:
            traceback.print_exception(exc)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    # Exit without interpreter teardown: the Temporal SDK can crash at exit in short-lived commands.
    os._exit(code)


def _one_line(error: Exception, workflow_id: str | None) -> tuple[str, int]:
    """What went wrong and what to do, in one line, with the exit code."""
    if isinstance(error, CommandError):
        return str(error), error.code
    if isinstance(error, TaskConflict):  # refused: another task holds the cluster, or it is managed already
        return str(error), EXIT_FAILED
    if isinstance(error, TakeoverError):
        return str(error), EXIT_UNAVAILABLE if error.retryable else EXIT_USAGE
    if isinstance(error, SettingsError):
        return f"{error}; see `ob-takeover config show`", EXIT_USAGE
    if isinstance(error, RPCError):
        if error.status == RPCStatusCode.NOT_FOUND and workflow_id:
            return (
                f"no takeover workflow {workflow_id}; its id is takeover-<address>-<port> "
                "(`temporal workflow list --query \"WorkflowType='TakeOverCluster'\"` lists them)",
                EXIT_USAGE,
            )
        if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return f"Temporal is unreachable ({error.message}); check temporal_address", EXIT_UNAVAILABLE
        return f"Temporal refused: {error.message}", EXIT_USAGE
    if isinstance(error, WorkflowFailureError):
        return f"the workflow failed: {innermost_message(error)}", EXIT_FAILED
    if isinstance(error, RuntimeError | ConnectionError | TimeoutError):  # e.g. Temporal unreachable at connect
        return f"{error}; check that Temporal runs at the configured address", EXIT_UNAVAILABLE
    if isinstance(error, ValueError | OSError):
        return str(error), EXIT_USAGE
    return f"{type(error).__name__}: {error} (run with --debug for the traceback)", EXIT_FAILED
