"""`ob-takeover config`: the settings in effect."""

from __future__ import annotations

import argparse

from ob_takeover.cli.arguments import Subcommands, add_command, add_group
from ob_takeover.cli.console import emit, table


def add_config_parsers(commands: Subcommands) -> None:
    """`config show`."""
    config = add_group(commands, "config", "settings")
    add_command(config, "show", cmd_config_show, "the effective settings, where each comes from, secrets masked")


def cmd_config_show(args: argparse.Namespace) -> None:
    rows = [
        {"setting": name, "variable": variable, "value": value, "source": source}
        for name, variable, value, source in args.settings.show()
    ]
    table(rows, ["setting", "variable", "value", "source"])
    emit({"configFile": args.settings.config_file, "settings": {row["setting"]: row["value"] for row in rows}})
