"""The metadb (MariaDB) stops in the middle of a takeover and comes back: the subtask that could not
write is retried by Temporal (MetadbUnavailable is transient) and the takeover completes."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from temporalio.client import Client

from metadb.db import Database
from tests.support.crash import SLOWDOWNS, Takeover, slow_down
from tests.support.driver import log_of, named, start, wait_for
from tests.support.mariadb import create_database, free_port, mariadb_server
from tests.support.simulator import simulation

pytestmark = pytest.mark.reliability

VICTIM = "Sync all tenant information"


async def test_takeover_survives_a_metadb_restart(client: Client, task_queue: str, tmp_path: Path) -> None:
    datadir, port = tmp_path / "mariadb", free_port()
    datadir.mkdir()
    with ExitStack() as running, simulation(tmp_path / "sim") as sim:
        host, port = running.enter_context(mariadb_server(datadir, port))
        url = create_database(host, port, "metadb")
        takeover = Takeover(client, task_queue, tmp_path, sim, url)
        try:
            # The subtask waits on the cluster for 1.5 s, then writes the metadb: stop it meanwhile.
            slow_down(VICTIM, SLOWDOWNS[VICTIM], sim, url)
            takeover.spawn()
            handle = await start(client, task_queue, takeover.body)
            await wait_for(handle, lambda t: named(t, VICTIM)[0].status.value == "RUNNING", timeout=60)
            takeover.db.close()
            running.close()
            stopped = time.monotonic()
            # Down for longer than the subtask waits: its write finds no metadb.
            await asyncio.sleep(4)
            running.enter_context(mariadb_server(datadir, port))
            print(f"metadb down for {time.monotonic() - stopped:.1f}s")
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=120)
            assert task.status.value == "SUCCESSFUL", takeover.last_log()
            (subtask,) = named(task, VICTIM)
            log = await log_of(handle, subtask.id)
            # It failed while the metadb was down and was retried; the worker says why.
            assert "attempt " in log, log
            assert "MetadbUnavailable" in (tmp_path / "worker0.log").read_text()
            db = Database(url)
            assert len(db.query("SELECT * FROM tenants")) == 5
            assert db.query("SELECT * FROM cluster_locks") == []
            assert [r["status"] for r in db.query("SELECT status FROM clusters")] == ["RUNNING"]
            db.close()
        finally:
            takeover.stop()
