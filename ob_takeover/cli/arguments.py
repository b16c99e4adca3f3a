"""Building blocks of the command parsers: a command bound to its handler, and the checked arguments
several commands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeAlias

from contracts.endpoints import parse_endpoint, parse_host_pattern

# argparse's collection of sub-commands (generic only to type checkers, hence the string).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
# A command's handler: its exit code, or None for EXIT_OK.
Handler: TypeAlias = Callable[[argparse.Namespace], int | None]


def add_command(group: Subcommands, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    """A sub-command of `group` that runs `handler`."""
    command: argparse.ArgumentParser = group.add_parser(name, help=help_text)
    command.set_defaults(handler=handler)
    return command


def add_group(commands: Subcommands, name: str, help_text: str) -> Subcommands:
    """A command group, such as `user`, whose sub-commands are its actions."""
    return commands.add_parser(name, help=help_text).add_subparsers(dest="action", required=True)


def _checked(parse: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse type from a parser whose ValueError message names what is wrong."""

    def check(text: str) -> str:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


def endpoint_argument(command: argparse.ArgumentParser, **kwargs: Any) -> None:
    """`--endpoint ADDRESS:PORT …`, each checked and normalised."""
    command.add_argument(
        "--endpoint", type=_checked(parse_endpoint), action="extend", nargs="+", metavar="ADDRESS:PORT", **kwargs
    )


def hosts_argument(command: argparse.ArgumentParser, **kwargs: Any) -> None:
    """`--hosts ADDRESS_OR_NETWORK …`, each checked and normalised."""
    command.add_argument(
        "--hosts", type=_checked(parse_host_pattern), action="extend", nargs="+", metavar="ADDRESS_OR_NETWORK", **kwargs
    )
