"""No password in clear text in Temporal's database, the worker's log or the metadb, whichever way a
takeover is started: the project's client, the `temporal` CLI through the codec endpoint, or a
credential reference without any password in the request."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.registry import build_activities
from activities.runtime import Runtime
from contracts.settings import load_settings
from metadb import credentials, hosts
from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import MasterKey, Vault
from ob_takeover.codec import EncryptionCodec, data_converter, load_codec_keys
from ob_takeover.service import create_codec_app, serve
from tests.conftest import binary
from tests.support.mariadb import free_port
from tests.support.simulator import Simulation, simulation, stored_secret
from worker import build_worker
from workflows.precheck import TakeOverPrecheck
from workflows.takeover import SEARCH_ATTRIBUTES, TakeOverCluster


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulation]:
    with simulation(tmp_path, zones=1, servers_per_zone=2, root_password="Sup3r'Secret\\Root%") as running:
        yield running


async def test_no_password_in_temporal_logs_or_metadb(
    sim: Simulation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    temporal_db = tmp_path / "temporal.db"
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(),
        dev_server_existing_path=binary("temporal"),
        dev_server_database_filename=str(temporal_db),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        dev_server_startup_timeout=timedelta(seconds=60),
        ui=False,
    )
    db = Database(f"sqlite:///{tmp_path / 'metadb.sqlite'}")
    migrate(db)
    vault = Vault(MasterKey.generate())
    vault.verify(db)
    runtime = Runtime(db=db, vault=vault, known_hosts=sim.ready["ssh"]["known_hosts"], poll_interval=0.1)
    ssh_key = Path(sim.ready["ssh"]["private_key_file"]).read_text()
    host_info = {
        "hostTypeId": hosts.add_host_type(db, "t"),
        "credentialId": credentials.save_credential(
            db, vault, kind=credentials.HOST, name="k", username="admin", secret=ssh_key, secret_type="private_key"
        ),
        "sshPort": sim.ssh_port,
    }
    root_credential = credentials.save_credential(
        db, vault, kind=credentials.CLUSTER, name="root", username="root@sys", secret=sim.root_password,
        endpoints=[f"{sim.address}:{sim.sql_port}"],
    )  # fmt: skip
    queue = f"secrets-{uuid.uuid4().hex[:6]}"
    codec_port = free_port()
    service = await serve(create_codec_app(EncryptionCodec(load_codec_keys(load_settings()))), "127.0.0.1", codec_port)
    client = env.client
    try:
        async with build_worker(client, activities=build_activities(runtime), queue=queue):
            with_password = {
                "rootSysPassword": sim.root_password,
                "address": sim.address,
                "port": sim.sql_port,
                "hostInfo": host_info,
            }
            report = await client.execute_workflow(
                TakeOverPrecheck.run, with_password, id=f"pre-{queue}", task_queue=queue
            )
            assert report.passed
            first = await client.execute_workflow(TakeOverCluster.run, with_password, id=f"a-{queue}", task_queue=queue)
            assert first.status.value == "SUCCESSFUL"
            # Again through the `temporal` CLI and the codec endpoint, with a credential reference.
            db.execute("DELETE FROM clusters")
            db.execute("UPDATE hosts SET reserved_by_cluster_id = NULL")
            by_reference = {"rootSysCredentialId": root_credential, "address": sim.address, "port": sim.sql_port}
            process = await asyncio.create_subprocess_exec(
                binary("temporal"), "workflow", "execute", "--type", "TakeOverCluster", "--task-queue", queue,
                "--workflow-id", f"b-{queue}", "--input", json.dumps(by_reference),
                "--codec-endpoint", f"http://127.0.0.1:{codec_port}/codec",
                "--address", client.service_client.config.target_host,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            output, _ = await process.communicate()
            assert process.returncode == 0, output.decode()[-2000:]
    finally:
        await service.cleanup()
        await env.shutdown()
    monitor = credentials.find_credential(db, vault, credentials.CLUSTER, "obcluster:1:ocp_monitor")
    assert monitor is not None
    secrets = {
        "root@sys": sim.root_password,
        "ocp_monitor": monitor.secret,
        "proxyro": stored_secret(runtime, "obcluster:1:proxyro"),
        "ssh key": ssh_key.splitlines()[1],
    }
    db.close()
    temporal_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("temporal.db*"))
    metadb_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("metadb.sqlite*"))
    assert len(temporal_bytes) > 100_000
    log_text = caplog.text + (tmp_path / "obsim.log").read_text()
    for name, secret in secrets.items():
        assert secret.encode() not in temporal_bytes, f"{name} in Temporal's database"
        assert secret.encode() not in metadb_bytes, f"{name} in the metadb"
        assert secret not in log_text, f"{name} in a log"
