"""The worker reuses its connections: one SSH connection per host and one MySQL connection per endpoint and
login for a whole takeover, counted by the simulator from outside (`GET /network`); a connection that broke
is replaced, never reused; a login whose point is to prove a password is always fresh."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client

from activities import connections
from activities.connections import PoolLimits, SqlPool, secret_digest
from activities.facts import VERSION
from activities.ob_sys_client import ObSysClient
from activities.registry import build_activities
from contracts.errors import ClusterSqlError, ClusterUnreachable
from contracts.messages import SubtaskInput, SubtaskResult
from contracts.topology import ClusterEndpoint
from tests.support.driver import log_of, start, wait_for
from tests.support.simulator import Simulation, sim_runtime, simulation, takeover_body
from worker import build_worker

# --- the SQL pool, with stand-in connections -------------------------------------------------------


class StandIn:
    """A connection whose socket is one end of a socket pair: the other end plays the server."""

    def __init__(self) -> None:
        self._sock, self.server = socket.socketpair()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self._sock.close()
        self.server.close()


class Connector:
    def __init__(self, fail_first: int = 0, delay: float = 0.0) -> None:
        self.made: list[StandIn] = []
        self.fail_first = fail_first
        self.delay = delay

    def __call__(self) -> StandIn:
        time.sleep(self.delay)
        if self.fail_first:
            self.fail_first -= 1
            raise ClusterUnreachable("refused")
        self.made.append(StandIn())
        return self.made[-1]


@pytest.mark.unit
def test_a_connection_is_lent_to_one_thread_at_a_time_and_shared() -> None:
    """Statements far quicker than a handshake (1 ms against 200 ms) wait for the one connection."""
    pool, connect = SqlPool(PoolLimits(share_wait=5)), Connector(delay=0.2)
    holders: Counter[int] = Counter()
    overlaps: list[int] = []
    lock = threading.Lock()

    def statements() -> None:
        for _ in range(20):
            connection, _ = pool.borrow("key", connect)
            with lock:
                holders[id(connection)] += 1
                overlaps.append(holders[id(connection)])
            time.sleep(0.001)
            with lock:
                holders[id(connection)] -= 1
            pool.give_back("key", connection)

    threads = [threading.Thread(target=statements) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(overlaps) == 1
    assert len(connect.made) == 1 and not connect.made[0].closed
    pool.close()
    assert connect.made[0].closed


@pytest.mark.unit
def test_a_statement_waits_for_the_busy_connection_then_opens_another() -> None:
    pool, connect = SqlPool(PoolLimits(share_wait=0.1, sql_per_key=2)), Connector(delay=0.3)
    first, reused = pool.borrow("key", connect)
    assert not reused
    began = time.monotonic()
    second, _ = pool.borrow("key", connect)
    assert time.monotonic() - began >= 0.1 and second is not first
    waiting: list[Any] = []
    third = threading.Thread(target=lambda: waiting.append(pool.borrow("key", connect)))
    third.start()
    time.sleep(0.3)
    assert waiting == []  # two are lent, the limit: the third waits for one of them
    pool.give_back("key", first)
    third.join(5)
    assert waiting == [(first, True)] and len(connect.made) == 2


@pytest.mark.unit
def test_a_statement_waits_no_longer_than_a_new_connection_takes_to_open() -> None:
    """Far from the cluster a queue of statements costs more than a handshake: the wait for the busy
    connection is bounded by how long the last new one took to open, not only by `share_wait`."""
    pool, connect = SqlPool(PoolLimits(share_wait=5, sql_per_key=2)), Connector(delay=0.05)
    first, _ = pool.borrow("key", connect)
    began = time.monotonic()
    second, reused = pool.borrow("key", connect)
    assert not reused and second is not first
    assert time.monotonic() - began < 1  # about 0.05 s of waiting and 0.05 s of connecting, not 5 s
    pool.give_back("key", first)
    pool.give_back("key", second)
    pool.close()


@pytest.mark.unit
def test_a_connection_that_saw_an_error_or_lost_its_server_is_never_lent_again() -> None:
    pool, connect = SqlPool(), Connector()
    connection, _ = pool.borrow("key", connect)
    pool.discard("key", connection)
    assert connection.closed
    again, reused = pool.borrow("key", connect)
    assert again is not connection and not reused
    pool.give_back("key", again)
    again.server.close()  # the server (or a cut) ended it while it was idle
    third, reused = pool.borrow("key", connect)
    assert third is not again and not reused and again.closed
    assert len(connect.made) == 3


@pytest.mark.unit
def test_a_failed_connect_is_not_remembered() -> None:
    pool, connect = SqlPool(), Connector(fail_first=1)
    with pytest.raises(ClusterUnreachable):
        pool.borrow("key", connect)
    connection, reused = pool.borrow("key", connect)
    assert not reused and connect.made == [connection]


@pytest.mark.unit
def test_idle_and_old_connections_are_closed() -> None:
    pool, connect = SqlPool(PoolLimits(idle_timeout=0.2, max_age=60)), Connector()
    connection, _ = pool.borrow("key", connect)
    pool.give_back("key", connection)
    deadline = time.monotonic() + 5
    while not connection.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert connection.closed and pool.idle_count() == 0
    aging = SqlPool(PoolLimits(max_age=0.2))
    old, _ = aging.borrow("key", connect)
    time.sleep(0.3)
    aging.give_back("key", old)
    assert old.closed and aging.borrow("key", connect)[0] is not old


@pytest.mark.unit
def test_secrets_are_keyed_by_a_digest_only() -> None:
    digest = secret_digest("Root#Pw'1")
    assert digest == secret_digest("Root#Pw'1") and digest != secret_digest("Root#Pw'2")
    assert "Root" not in digest and secret_digest("a", "bc") != secret_digest("ab", "c")


# --- ObSysClient over the pool, against the simulator --------------------------------------------------


@pytest.fixture(scope="module")
def one_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    with simulation(tmp_path_factory.mktemp("sql"), zones=1, servers_per_zone=1, hosts=False, network=True) as sim:
        yield sim


def root(sim: Simulation) -> ClusterEndpoint:
    return ClusterEndpoint(address=sim.address, port=sim.sql_port, root_sys_password=sim.root_password)


def logins(sim: Simulation) -> int:
    return sum(1 for entry in sim.state()["logins"] if entry["error"] is None)


def test_clients_share_one_login_and_an_error_drops_it(one_server: Simulation) -> None:
    sim, pool = one_server, SqlPool()
    before = logins(sim)
    for _ in range(3):
        with ObSysClient(root(sim), pool=pool) as client:
            assert client.query("SELECT 1 AS ONE") == [{"ONE": 1}]
    assert logins(sim) == before + 1
    other = ObSysClient(root(sim).model_copy(update={"root_sys_password": "wrong"}), pool=pool)
    with pytest.raises(Exception, match="refused"):
        other.query("SELECT 1")
    sim.fault("SELECT 2", error=4012, message="Timeout")
    with pytest.raises(ClusterSqlError):
        ObSysClient(root(sim), pool=pool).query("SELECT 2 AS TWO")
    assert ObSysClient(root(sim), pool=pool).query("SELECT 3 AS THREE") == [{"THREE": 3}]
    # The wrong password logged in nowhere; the error cost the pool its connection.
    assert logins(sim) == before + 2
    pool.close()


def test_a_cut_connection_is_replaced_and_only_a_read_is_sent_again(
    one_server: Simulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, pool = one_server, SqlPool()
    client = ObSysClient(root(sim), pool=pool)
    client.query("SELECT 1")
    assert sim.call("POST", "/network/cuts", {"endpoint": f"{sim.address}:{sim.sql_port}"})["cut"] >= 1
    time.sleep(0.1)
    # Seen dead before it is lent: the statement goes over a new connection.
    assert client.query("SELECT 1 AS ONE") == [{"ONE": 1}]
    # A connection that dies unseen (the reset still on its way): a read is sent once more, a write is not.
    monkeypatch.setattr(connections, "_socket_idle", lambda sock: True)
    sim.call("POST", "/network/cuts", {"endpoint": f"{sim.address}:{sim.sql_port}"})
    time.sleep(0.1)
    assert "OceanBase" in client.read(VERSION)
    sim.call("POST", "/network/cuts", {"endpoint": f"{sim.address}:{sim.sql_port}"})
    time.sleep(0.1)
    with pytest.raises(ClusterUnreachable):
        client.query("SELECT 4 AS FOUR")
    assert client.query("SELECT 5 AS FIVE") == [{"FIVE": 5}]
    pool.close()


def test_threads_never_share_a_connection_at_once(one_server: Simulation) -> None:
    sim, pool = one_server, SqlPool()
    before = logins(sim)
    failures: list[BaseException] = []

    def reads(n: int) -> None:
        try:
            client = ObSysClient(root(sim), pool=pool)
            for i in range(10):
                assert client.query(f"SELECT {n * 100 + i} AS N") == [{"N": n * 100 + i}]
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=reads, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert 1 <= logins(sim) - before <= pool.limits.sql_per_key
    pool.close()


# --- whole takeovers -------------------------------------------------------------------------------------


def opened_since(sim: Simulation, before: dict[str, Any]) -> dict[str, int]:
    now = sim.call("GET", "/network")["connections_opened"]
    return {kind: now[kind] - before["connections_opened"][kind] for kind in now}


def successful_logins(sim: Simulation) -> Counter[str]:
    return Counter(entry["login"] for entry in sim.state()["logins"] if entry["error"] is None)


async def test_a_takeover_opens_one_ssh_connection_per_host_and_at_most_one_sql_connection_per_server_and_login(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """3 zones x 2 servers at 5 ms: 6 SSH connections for 6 hosts (before: 30), and at most 6 MySQL
    connections (before: 27): root@sys at most `sql_per_key` (4) times, for per-server subtasks that would
    otherwise queue behind one connection, and the two logins that prove a password (the monitor user's in
    "Wait cluster accessible", proxyro's in "Set proxyro password to sys tenant"), each fresh, once."""
    with simulation(tmp_path / "sim", latency_ms=5) as sim:
        runtime = sim_runtime(tmp_path, sim)
        body = takeover_body(sim, runtime)
        before, logins_before = sim.settled_network(), successful_logins(sim)
        async with build_worker(client, activities=build_activities(runtime), queue=task_queue):
            handle = await start(client, task_queue, body)
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=90)
            assert task.status.value == "SUCCESSFUL"
        opened = opened_since(sim, before)
        logged_in = successful_logins(sim) - logins_before
        await runtime.pools.close()
    assert opened["ssh"] == len(sim.ready["hosts"]) == 6
    assert set(logged_in) == {"root@sys", "ocp_monitor@sys", "proxyro@sys"}
    assert 1 <= logged_in["root@sys"] <= runtime.pools.sql.limits.sql_per_key < len(sim.ready["servers"])
    assert logged_in["ocp_monitor@sys"] == logged_in["proxyro@sys"] == 1
    assert opened["sql"] == sum(logged_in.values())


async def test_a_cut_of_every_connection_between_two_subtasks_is_survived(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Every open connection is reset just before "Attach cluster attributes": it and the subtasks after it
    (SQL and SSH) open new connections, none fails an attempt, and the takeover ends SUCCESSFUL."""
    with simulation(tmp_path / "sim", zones=3, servers_per_zone=1, network=True) as sim:
        runtime = sim_runtime(tmp_path, sim)
        cuts: list[int] = []
        marks: dict[str, Any] = {}
        activities = build_activities(runtime)
        name = "attach_cluster_attributes"
        original = next(a for a in activities if activity._Definition.from_callable(a).name == name)  # type: ignore[union-attr]

        def cut_everything() -> None:
            marks["before"] = sim.call("GET", "/network")
            for host in sim.ready["hosts"]:
                cuts.append(sim.call("POST", "/network/cuts", {"endpoint": f"host:{host['address']}"})["cut"])

        @activity.defn(name=name)
        async def cut_then_attach(arg: SubtaskInput) -> SubtaskResult:
            if not cuts:
                await asyncio.to_thread(cut_everything)
                await asyncio.sleep(0.2)
            result: SubtaskResult = await original(arg)
            return result

        activities = [cut_then_attach if a is original else a for a in activities]
        async with build_worker(client, activities=activities, queue=task_queue):
            handle = await start(client, task_queue, takeover_body(sim, runtime))
            task = await wait_for(handle, lambda t: t.status.value != "RUNNING", timeout=90)
            assert task.status.value == "SUCCESSFUL"
            attempts = [await log_of(handle, s.id) for s in task.subtasks]
        opened = opened_since(sim, marks["before"])
        await runtime.pools.close()
    # The cut met the pooled connections: root@sys's and one SSH connection per host.
    assert sum(cuts) >= 1 + len(sim.ready["hosts"])
    assert opened["sql"] >= 1 and opened["ssh"] == len(sim.ready["hosts"])
    assert not any("attempt 2" in log for log in attempts)
