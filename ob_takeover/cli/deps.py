"""What commands work on, opened from the settings: the metadb, the password box, the Temporal client."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import Vault, load_vault

if TYPE_CHECKING:
    from ob_takeover.client import TakeoverClient


def open_metadb(args: argparse.Namespace) -> Database:
    """The metadb of the settings, checked and migrated to the current schema."""
    db = Database(args.settings.metadb)
    db.check()
    migrate(db)
    return db


def open_vault(db: Database, args: argparse.Namespace) -> Vault:
    """The password box under the settings' master key, verified against the metadb's secrets."""
    vault = load_vault(args.settings)
    vault.verify(db)
    return vault


async def connect_client(args: argparse.Namespace) -> TakeoverClient:
    """A client of the takeover workflows on the settings' Temporal."""
    # Imported here: only the commands that talk to Temporal pay for the workflow definitions.
    from ob_takeover.client import TakeoverClient

    return await TakeoverClient.connect(settings=args.settings)
