"""The simulator's network conditions: latency and jitter on every endpoint, partitions, cuts, slow commands
and connection counts, as a client of its SQL, SSH and proxy ports notices them.

Timings are asserted as lower bounds (latency cannot make anything faster); upper bounds only where a
missing behaviour would cost many times more."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pymysql
import pytest

from obsim.network import Endpoint, Network, NetworkConditions, select_endpoints
from tests.support.simulator import Simulation, simulation

LATENCY_MS = 30
JITTER_MS = 5
# A round trip at the smallest one-way delay the jitter allows, in seconds, less a tenth for timer slack.
RTT = 2 * (LATENCY_MS - JITTER_MS) / 1000 * 0.9


def quiet_simulation(directory: Path, **options: Any) -> Iterator[Simulation]:
    """A one-server simulation with hosts whose log stays empty through latency, partitions and cuts."""
    with simulation(directory, zones=1, servers_per_zone=1, **options) as running:
        yield running
    assert (directory / "obsim.log").read_text() == ""


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    """No network options: the endpoints are reached without a relay."""
    yield from quiet_simulation(tmp_path_factory.mktemp("direct"))


@pytest.fixture(scope="module")
def delayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    yield from quiet_simulation(
        tmp_path_factory.mktemp("delayed"), latency_ms=LATENCY_MS, jitter_ms=JITTER_MS, extra=["--proxy-port", "0"]
    )


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    """No latency, but a relay in front of every endpoint, for partitions and cuts."""
    yield from quiet_simulation(tmp_path_factory.mktemp("faulty"), network=True, extra=["--proxy-port", "0"])


def connect(sim: Simulation, *, proxy: bool = False, timeout: float = 10) -> pymysql.Connection:
    if proxy:
        host, port = sim.ready["proxy"]["address"], sim.ready["proxy"]["port"]
        user = f"root@sys#{sim.ready['cluster']['name']}"
    else:
        host, port, user = sim.address, sim.sql_port, "root@sys"
    return pymysql.connect(
        host=host, port=port, user=user, password=sim.root_password, ssl_disabled=True, connect_timeout=timeout
    )


def sql_endpoint(sim: Simulation) -> str:
    return f"{sim.address}:{sim.sql_port}"


def query_seconds(sim: Simulation, *, proxy: bool = False) -> float:
    """The median time of `SELECT 1` on an open connection."""
    connection = connect(sim, proxy=proxy)
    samples = []
    with connection.cursor() as cursor:
        for _ in range(5):
            began = time.perf_counter()
            cursor.execute("SELECT 1")
            assert cursor.fetchall() == ((1,),)
            samples.append(time.perf_counter() - began)
    connection.close()
    return statistics.median(samples)


def connect_seconds(sim: Simulation) -> float:
    samples = []
    for _ in range(3):
        began = time.perf_counter()
        connect(sim).close()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def ssh(sim: Simulation, timeout: float = 10) -> Any:
    return asyncssh.connect(
        sim.address,
        sim.ssh_port,
        username=sim.ready["ssh"]["username"],
        client_keys=[sim.ready["ssh"]["private_key_file"]],
        known_hosts=sim.ready["ssh"]["known_hosts"],
        connect_timeout=timeout,
    )


async def ssh_seconds(sim: Simulation) -> tuple[float, float]:
    """The median times of an SSH login and of one command on it."""
    logins, commands = [], []
    for _ in range(3):
        began = time.perf_counter()
        async with ssh(sim) as connection:
            logged_in = time.perf_counter()
            await connection.run("true", check=True)
            commands.append(time.perf_counter() - logged_in)
        logins.append(logged_in - began)
    return statistics.median(logins), statistics.median(commands)


def network(sim: Simulation) -> dict[str, Any]:
    state: dict[str, Any] = sim.call("GET", "/network")
    return state


def answer(sim: Simulation, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        sim.control + path, method=method, data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_a_query_costs_a_round_trip(direct: Simulation, delayed: Simulation) -> None:
    assert delayed.ready["network"] == {"latency_ms": LATENCY_MS, "jitter_ms": JITTER_MS, "relayed": True}
    assert direct.ready["network"]["relayed"] is False
    assert query_seconds(delayed) - query_seconds(direct) >= RTT


def test_a_query_through_the_proxy_costs_a_round_trip(delayed: Simulation) -> None:
    assert query_seconds(delayed, proxy=True) >= RTT


def test_a_mysql_login_costs_its_handshakes_round_trips(direct: Simulation, delayed: Simulation) -> None:
    # TCP's SYN and SYN/ACK, the server's greeting after the client's ACK, the login and its answer.
    assert connect_seconds(delayed) - connect_seconds(direct) >= 3 * RTT


async def test_an_ssh_login_and_command_cost_their_round_trips(direct: Simulation, delayed: Simulation) -> None:
    fast_login, fast_command = await ssh_seconds(direct)
    slow_login, slow_command = await ssh_seconds(delayed)
    # TCP, the version and key exchanges, NEWKEYS with the service request, the login.
    assert slow_login - fast_login >= 5 * RTT
    # Opening the channel, then the exec request and the command's exit.
    assert slow_command - fast_command >= 2 * RTT


async def test_jitter_keeps_every_byte_in_order(delayed: Simulation) -> None:
    data = random.Random(7).randbytes(1_000_000)
    async with ssh(delayed) as connection:
        result = await connection.run("cat", input=data, encoding=None, check=True)
    assert result.stdout == data


def test_a_partitioned_server_times_out_new_connections_and_stalls_open_ones(faulty: Simulation) -> None:
    endpoint = sql_endpoint(faulty)
    opened = connect(faulty)
    # Long enough that the timed-out connect below still falls inside it on a busy machine.
    reply = faulty.call("POST", "/network/partitions", {"endpoint": endpoint, "seconds": 3})
    began = time.perf_counter()
    assert reply == {"partitioned": [endpoint], "seconds": 3}
    assert endpoint in network(faulty)["partitions"]
    with pytest.raises(pymysql.err.OperationalError) as refused:
        connect(faulty, timeout=1)
    assert refused.value.args[0] == 2003 and "timed out" in refused.value.args[1]
    with opened.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchall() == ((1,),)
    assert time.perf_counter() - began >= 2.9
    opened.close()
    assert network(faulty)["partitions"] == {}
    connect(faulty, timeout=1).close()


async def test_a_partitioned_host_is_cut_off_over_ssh_and_sql(faulty: Simulation) -> None:
    async with ssh(faulty) as connection:
        reply = faulty.call("POST", "/network/partitions", {"endpoint": f"host:{faulty.address}", "seconds": 3})
        began = time.perf_counter()
        assert sorted(reply["partitioned"]) == sorted([sql_endpoint(faulty), f"{faulty.address}:{faulty.ssh_port}"])
        with pytest.raises(asyncio.TimeoutError):
            async with ssh(faulty, timeout=1):
                pass
        with pytest.raises(pymysql.err.OperationalError):
            connect(faulty, timeout=0.3)
        result = await connection.run("echo healed", check=True)
        assert result.stdout == "healed\n" and time.perf_counter() - began >= 2.9


def test_deleting_the_partitions_heals_them_at_once(faulty: Simulation) -> None:
    faulty.call("POST", "/network/partitions", {"endpoint": "proxy", "seconds": 60})
    with pytest.raises(pymysql.err.OperationalError):
        connect(faulty, proxy=True, timeout=0.5)
    assert faulty.call("DELETE", "/network/partitions") == {"healed": 1}
    began = time.perf_counter()
    connect(faulty, proxy=True).close()
    assert time.perf_counter() - began < 5


async def test_a_cut_breaks_open_connections_and_new_ones_work(faulty: Simulation) -> None:
    for proxy, endpoint in ((False, sql_endpoint(faulty)), (True, "proxy")):
        opened = connect(faulty, proxy=proxy)
        assert faulty.call("POST", "/network/cuts", {"endpoint": endpoint})["cut"] >= 1
        with pytest.raises(pymysql.err.OperationalError) as lost, opened.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert lost.value.args[0] in (2006, 2013)
        fresh = connect(faulty, proxy=proxy)
        with fresh.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchall() == ((1,),)
        fresh.close()
    async with ssh(faulty) as connection:
        faulty.call("POST", "/network/cuts", {"endpoint": f"{faulty.address}:{faulty.ssh_port}"})
        with pytest.raises((asyncssh.Error, OSError)):
            await connection.run("true", check=True)
    async with ssh(faulty) as connection:
        await connection.run("true", check=True)


async def test_slow_commands_start_late(direct: Simulation) -> None:
    async with ssh(direct) as connection:
        reply = direct.call("PUT", "/network/slow-commands", {"host": direct.address, "seconds": 0.5})
        assert reply == {"slow_commands": {direct.address: 0.5}}
        began = time.perf_counter()
        await connection.run("true", check=True)
        assert time.perf_counter() - began >= 0.5
        assert direct.call("PUT", "/network/slow-commands", {"host": direct.address, "seconds": 0}) == {
            "slow_commands": {}
        }
        began = time.perf_counter()
        await connection.run("true", check=True)
        assert time.perf_counter() - began < 0.5


async def test_the_network_counts_the_connections_each_endpoint_accepted(direct: Simulation) -> None:
    sql, host = sql_endpoint(direct), f"{direct.address}:{direct.ssh_port}"
    before = network(direct)
    connections = [connect(direct), connect(direct)]
    async with ssh(direct):
        during = network(direct)
    for connection in connections:
        connection.close()
    assert during["connections_opened"]["sql"] - before["connections_opened"]["sql"] == 2
    assert during["connections_opened"]["ssh"] - before["connections_opened"]["ssh"] == 1
    assert during["endpoints"][sql]["opened"] - before["endpoints"][sql]["opened"] == 2
    assert during["endpoints"][sql]["open"] >= 2 and during["endpoints"][host]["open"] >= 1
    assert during["connections_opened"]["proxy"] == 0
    deadline = time.monotonic() + 5
    while network(direct)["connections_open"] != {"sql": 0, "ssh": 0, "proxy": 0}:
        assert time.monotonic() < deadline, network(direct)
        time.sleep(0.05)


def test_partitions_and_cuts_need_the_relay(direct: Simulation) -> None:
    for path, body in (("/network/partitions", {"endpoint": "proxy", "seconds": 1}), ("/network/cuts", {})):
        status, reply = answer(direct, "POST", path, json.dumps(body).encode())
        assert status == 409 and "--network" in reply["error"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/network/partitions", {"seconds": 1}, "endpoint"),
        ("POST", "/network/partitions", {"endpoint": "127.9.9.9:1", "seconds": 1}, "endpoint"),
        ("POST", "/network/partitions", {"endpoint": "proxy"}, "seconds"),
        ("POST", "/network/partitions", {"endpoint": "proxy", "seconds": 0}, "seconds"),
        ("POST", "/network/partitions", {"endpoint": "proxy", "seconds": "1"}, "seconds"),
        ("POST", "/network/partitions", ["proxy", 1], "body"),
        ("POST", "/network/cuts", {"endpoint": 7}, "endpoint"),
        ("PUT", "/network/slow-commands", {"host": "127.9.9.9", "seconds": 1}, "host"),
        ("PUT", "/network/slow-commands", {"host": "HOST", "seconds": -1}, "seconds"),
        ("PUT", "/network/slow-commands", {"host": "HOST", "seconds": True}, "seconds"),
        ("PUT", "/network/slow-commands", None, "body"),
    ],
)
def test_bad_bodies_answer_400_naming_the_field(
    faulty: Simulation, method: str, path: str, body: Any, field: str
) -> None:
    data = b"{not json" if body is None else json.dumps(body).replace("HOST", faulty.address).encode()
    status, reply = answer(faulty, method, path, data)
    assert status == 400 and reply["field"] == field and reply["error"].startswith(f"{field}: ")
    assert network(faulty)["partitions"] == {}


async def test_a_relay_delays_each_chunk_once_and_the_greeting_by_the_handshake() -> None:
    """Chunks sent back to back arrive one latency later, not one latency apart; a server's greeting
    arrives two round trips after the connect."""
    latency = 0.05

    async def greet_and_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(greet_and_echo, "127.0.0.1", 0)
    net = Network(NetworkConditions(latency_ms=latency * 1000))
    relay = await net.relay(net.endpoint("sql", "127.0.0.1", 0), ("127.0.0.1", 0), server.sockets[0].getsockname())
    try:
        began = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        assert await reader.readline() == b"hello\n"
        assert time.perf_counter() - began >= 4 * latency * 0.9
        began = time.perf_counter()
        for index in range(20):
            writer.write(b"%02d" % index)
            await writer.drain()
            await asyncio.sleep(0.005)
        echoed = await reader.readexactly(40)
        assert echoed == b"".join(b"%02d" % i for i in range(20))
        # Each chunk delayed after the one before it would take 20 round trips (2 s).
        assert 2 * latency * 0.9 <= time.perf_counter() - began < 1.0
        writer.close()
    finally:
        await relay.close()
        server.close()


@pytest.mark.unit
def test_jitter_spreads_delays_around_the_latency_reproducibly() -> None:
    conditions = NetworkConditions(latency_ms=30, jitter_ms=10)
    first, second = random.Random(3), random.Random(3)
    delays = [conditions.one_way(first) for _ in range(500)]
    assert delays == [conditions.one_way(second) for _ in range(500)]
    assert all(0.020 <= d <= 0.040 for d in delays) and max(delays) - min(delays) > 0.015
    assert NetworkConditions(latency_ms=5, jitter_ms=50).one_way(random.Random(1)) >= 0


@pytest.mark.unit
def test_an_endpoint_is_named_by_address_and_port_host_or_proxy() -> None:
    sql, shell = Endpoint("sql", "127.0.0.2", 2881), Endpoint("ssh", "127.0.0.2", 22)
    other, proxy = Endpoint("sql", "127.0.0.3", 2881), Endpoint("proxy", "127.0.0.1", 2883)
    endpoints = [sql, shell, other, proxy]
    assert select_endpoints(endpoints, "127.0.0.2:2881") == [sql]
    assert select_endpoints(endpoints, "host:127.0.0.2") == [sql, shell]
    assert select_endpoints(endpoints, "proxy") == [proxy]
    assert select_endpoints(endpoints, "127.0.0.1:2883") == [proxy]
    with pytest.raises(ValueError, match=r"no endpoint '127.0.0.9:1' .*127.0.0.2:2881"):
        select_endpoints(endpoints, "127.0.0.9:1")


@pytest.mark.unit
async def test_a_partition_outlasts_a_shorter_one_and_heals() -> None:
    net = Network(relay=True)
    endpoint = net.endpoint("ssh", "127.0.0.2", 22)
    calls: list[bool] = []
    endpoint.holders.append(calls.append)
    net.partition("host:127.0.0.2", 0.2)
    net.partition("127.0.0.2:22", 0.05)
    assert not endpoint.reachable.is_set() and calls == [True]
    await asyncio.sleep(0.1)
    assert not endpoint.reachable.is_set()
    await asyncio.sleep(0.2)
    assert endpoint.reachable.is_set() and calls == [True, False] and net.state()["partitions"] == {}
    net.partition("127.0.0.2:22", 5)
    assert net.heal() == 1 and calls == [True, False, True, False]
    net.close()
