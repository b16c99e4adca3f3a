"""What the operator sees and types: exit codes, the aligned table, the JSON last line, secrets from a
prompt or stdin, and the one-line error an operator can act on."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts.task_view import RecordedStatus
from metadb.db import Database

# Exit codes, for scripts (docs/operators-guide.md, "Exit codes").
EXIT_OK = 0  # done: the task is SUCCESSFUL or ROLLED_BACK, the precheck passed
EXIT_FAILED = 1  # the task FAILED or was ABORTED, the precheck did not pass, an operation was refused
EXIT_USAGE = 2  # a wrong argument, setting or input, or something named does not exist
EXIT_RUNNING = 3  # the task is still running (or rolling back)
EXIT_UNAVAILABLE = 4  # Temporal or the metadb cannot be reached: try again later

# ObTaskStatus (the search attribute, the vocabulary everywhere) to exit code.
STATUS_EXIT: dict[str, int] = {
    RecordedStatus.SUCCESSFUL: EXIT_OK,
    RecordedStatus.ROLLED_BACK: EXIT_OK,
    RecordedStatus.FAILED: EXIT_FAILED,
    RecordedStatus.ABORTED: EXIT_FAILED,
    RecordedStatus.ROLLBACK_FAILED: EXIT_FAILED,
    RecordedStatus.RUNNING: EXIT_RUNNING,
    RecordedStatus.ROLLING_BACK: EXIT_RUNNING,
    RecordedStatus.CREATING: EXIT_RUNNING,
}


class CommandError(Exception):
    """A problem the operator can fix; printed as one line with what to do."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def emit(result: dict[str, Any]) -> None:
    """The machine-readable result: one JSON object, the command's last line on stdout."""
    print(json.dumps(result, sort_keys=True, default=str))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """A plain aligned table on stdout (followed by the JSON line)."""
    for line in aligned(rows, columns):
        print(line)


def aligned(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    """The lines of a table: upper-case headers over left-aligned columns as wide as their widest cell; "-"
    for a missing value."""
    cells = [[str(row.get(c, "") if row.get(c) is not None else "-") for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return lines


def say_where_if_empty(rows: Sequence[Any], what: str, args: argparse.Namespace) -> None:
    """An empty listing names the metadb it read, so a wrong working directory or config is noticed."""
    if not rows:
        source = args.settings.sources.get("metadb", "default")
        url = Database(args.settings.metadb).url
        where = Path(url.path).resolve() if url.dialect == "sqlite" else url
        print(
            f"no {what} in metadb {where} (metadb from {source}; see `ob-takeover config show`)",
            file=sys.stderr,
        )


def read_secret(prompt: str, from_stdin: bool, option: str = "--password-stdin") -> str:
    """A secret from one line of stdin (`option`) or a terminal prompt; never empty."""
    if from_stdin:
        value = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        value = getpass.getpass(prompt)
    else:
        raise CommandError(f"{prompt.strip(': ')} needed: give it on stdin with {option}, or run in a terminal")
    if not value:
        raise CommandError(f"{prompt.strip(': ')} must not be empty")
    return value
