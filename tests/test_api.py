"""OCP's REST API over real HTTP, driven the way OCP clients in the field drive it: `requests` with Basic
auth and `Content-Type: application/json` on every call, reading only the HTTP status, `data` and
`error.message`. The service runs on loopback with a real Temporal server, a real worker, the simulator
and its SSH hosts."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from temporalio.client import Client

from activities.registry import build_activities
from activities.runtime import Runtime
from contracts.engine import workflow_id_for
from contracts.settings import load_settings
from metadb import credentials, tasks, users
from ob_takeover.api.auth import Authenticator
from ob_takeover.api.routes import Services
from ob_takeover.codec import EncryptionCodec, load_codec_keys
from ob_takeover.service import Running, create_app, serve
from tests.support.driver import keep_history
from tests.support.mariadb import free_port
from tests.support.prometheus import sample
from tests.support.simulator import Simulation, sim_runtime, simulation
from worker import build_worker

PASSWORDS = {"admin": "Admin-pw-123", "manager": "Manager-pw-123", "viewer": "Viewer-pw-123"}
ROLES = {"admin": users.ADMIN, "manager": users.TASK_MANAGER, "viewer": users.TASK_VIEWER}


@dataclass
class Api:
    """An OCP client in the field: Basic auth and a JSON content type on every call."""

    base: str
    service: Running
    runtime: Runtime
    client: Client

    async def call(
        self, method: str, path: str, who: str | None = "admin", body: Any = None, password: str | None = None
    ) -> requests.Response:
        auth = (who, password or PASSWORDS[who]) if who else None
        headers = {"Content-Type": "application/json"}
        data = json.dumps(body) if body is not None else None
        return await asyncio.to_thread(
            requests.request, method, self.base + path, auth=auth, headers=headers, data=data, timeout=60,
            allow_redirects=False,
        )  # fmt: skip

    async def data(self, method: str, path: str, who: str = "admin", body: Any = None) -> Any:
        reply = await self.call(method, path, who, body)
        assert reply.status_code == 200, reply.text
        return reply.json().get("data")


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulation]:
    with simulation(tmp_path / "sim") as running:
        yield running


@pytest.fixture
async def api(tmp_path: Path, sim: Simulation, client: Client, task_queue: str) -> AsyncIterator[Api]:
    runtime = sim_runtime(tmp_path, sim)
    for name, role in ROLES.items():
        users.add_user(runtime.db, name, role, PASSWORDS[name])
    settings = load_settings().model_copy(update={"task_queue": task_queue, "temporal_ui": "http://127.0.0.1:8233"})

    async def connect() -> Client:
        return client

    services = Services(
        settings=settings, db=runtime.db, vault=runtime.vault, auth=Authenticator(runtime.db), connect=connect
    )
    port = free_port()
    service = await serve(create_app(runtime.db, services=services), "127.0.0.1", port)
    try:
        yield Api(f"http://127.0.0.1:{port}", service, runtime, client)
    finally:
        await service.cleanup()


def error_of(reply: requests.Response) -> dict[str, Any]:
    body = reply.json()
    assert body["successful"] is False and body["status"] == reply.status_code, body
    assert body["traceId"] and body["server"] and body["timestamp"], body
    error: dict[str, Any] = body["error"]
    return error


# Every endpoint, with the least role that may call it.
ENDPOINTS = [
    ("GET", "/api/v2/info", "viewer"),
    ("POST", "/api/v2/ob/clusters/takeOverPreCheck", "manager"),
    ("POST", "/api/v2/ob/clusters/takeOver", "manager"),
    ("GET", "/api/v2/ob/clusters", "viewer"),
    ("GET", "/api/v2/ob/clusters/1", "viewer"),
    ("GET", "/api/v2/ob/clusters/1/zones", "viewer"),
    ("GET", "/api/v2/ob/clusters/1/servers", "viewer"),
    ("GET", "/api/v2/compute/hosts", "viewer"),
    ("GET", "/api/v2/compute/hosts/1", "viewer"),
    ("GET", "/api/v2/git-info", "viewer"),
    ("GET", "/api/v2/tasks/instances", "viewer"),
    ("GET", "/api/v2/tasks/instances/1", "viewer"),
    ("POST", "/api/v2/tasks/instances/1/retry", "manager"),
    ("POST", "/api/v2/tasks/instances/1/rollback", "manager"),
    ("POST", "/api/v2/tasks/instances/1/subtasks/2/retry", "manager"),
    ("POST", "/api/v2/tasks/instances/1/subtasks/2/skip", "manager"),
    ("POST", "/api/v2/tasks/instances/1/subtasks/2/cancel", "manager"),
    ("GET", "/api/v2/tasks/instances/1/subtasks/2/log", "viewer"),
    ("GET", "/api/v2/compute/hostTypes", "manager"),
    ("POST", "/api/v2/compute/hostTypes", "admin"),
    ("GET", "/api/v2/profiles/me/credentials", "admin"),
    ("POST", "/api/v2/profiles/me/credentials", "admin"),
    ("GET", "/task/1", "viewer"),
]
BELOW = {"admin": "manager", "manager": "viewer"}


async def test_every_endpoint_needs_basic_auth_and_the_right_role(api: Api) -> None:
    for number, (method, path, least) in enumerate(ENDPOINTS):
        anonymous = await api.call(method, path, who=None, body={})
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic"), path
        assert error_of(anonymous)["message"] == "authentication required: HTTP Basic"
        # A user name of its own per endpoint: five failures of one name are throttled (tested below).
        wrong = await api.call(method, path, who=f"stranger{number}", password="not-the-password", body={})
        assert wrong.status_code == 401 and error_of(wrong)["message"] == "wrong user name or password"
        if least in BELOW:
            refused = await api.call(method, path, who=BELOW[least], body={})
            assert refused.status_code == 403, (path, refused.text)
            assert f"it needs {ROLES[least]}" in error_of(refused)["message"]
        allowed = await api.call(method, path, who=least, body={})
        assert allowed.status_code not in (401, 403), (path, allowed.text)
    # Only the time needs no credentials; the config server stays anonymous for observers.
    reply = await api.call("GET", "/api/v2/time", who=None)
    assert reply.status_code == 200 and reply.text.startswith(str(time.gmtime().tm_year))
    reply = await api.call("GET", "/services?Action=ObRootServiceInfo&ObCluster=obcluster&version=2", who=None)
    assert reply.status_code == 404 and reply.json()["Data"] is None
    ready = await api.call("GET", "/readyz", who=None)
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    # The service's own metrics: requests by route template (never by path with its ids), status, latency.
    page = (await api.call("GET", "/metrics", who=None)).text
    task = {"route": "/api/v2/tasks/instances/{task_id}", "method": "GET"}
    assert sample(page, "ob_takeover_http_requests_total", **task, status="401") == 2
    retry = {"route": "/api/v2/tasks/instances/{task_id}/retry", "method": "POST"}
    assert sample(page, "ob_takeover_http_requests_total", **retry, status="403") == 1
    total = sample(page, "ob_takeover_http_requests_total", **task)
    assert total >= 3 and sample(page, "ob_takeover_http_request_duration_seconds_count", **task) == total
    assert "/instances/1" not in page and "not-the-password" not in page


async def test_info_is_the_bare_object_and_openapi_lists_the_endpoints(api: Api) -> None:
    info = (await api.call("GET", "/api/v2/info", who="viewer")).json()
    assert "data" not in info and info["buildVersion"].startswith("4.3.4_")
    assert tuple(int(p) for p in info["buildVersion"].split("_")[0].split(".")) >= (4, 2, 0)
    # The document and the page are a viewer's; the page's scripts, style and icon come from this service.
    for path in ("/api/v2/openapi.json", "/api/v2/docs"):
        assert (await api.call("GET", path, who=None)).status_code == 401
    document = (await api.call("GET", "/api/v2/openapi.json", who="viewer")).json()
    assert document["components"]["securitySchemes"]["basicAuth"] == {"type": "http", "scheme": "basic"}
    assert document["paths"]["/api/v2/ob/clusters"]["get"]["security"] == [{"basicAuth": []}]
    assert document["paths"]["/api/v2/time"]["get"]["security"] == []  # anonymous
    # Errors are OCP's envelope with OCP's 400, never FastAPI's 422; each role's refusals are declared.
    task = document["paths"]["/api/v2/tasks/instances/{task_id}"]["get"]["responses"]
    assert sorted(task) == ["200", "400", "401", "404", "429", "503"], sorted(task)
    assert task["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
    assert "403" in document["paths"]["/api/v2/ob/clusters/takeOver"]["post"]["responses"]
    assert "422" not in json.dumps(document["paths"]) and "$defs" not in json.dumps(document)
    for method, path, _ in ENDPOINTS:
        template = path.replace("/instances/1", "/instances/{task_id}").replace("/subtasks/2", "/subtasks/{subtask_id}")
        template = template.replace("/clusters/1", "/clusters/{cluster_id}").replace("/task/1", "/task/{task_id}")
        template = template.replace("/hosts/1", "/hosts/{host_id}")
        assert method.lower() in document["paths"][template], template
    assert "rootSysPassword" in json.dumps(document["paths"]["/api/v2/ob/clusters/takeOver"])
    page = (await api.call("GET", "/api/v2/docs", who="viewer")).text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page) + re.findall(r"url: '([^']+)'", page)
    assert assets and all(asset.startswith("/api/v2/") for asset in assets), assets
    assert not re.search(r"https?://", page)
    assert "/api/v2/openapi.json" in assets  # fetched with the viewer's credentials, as the page itself was
    files = [a for a in assets if a.startswith("/api/v2/docs/assets/")]
    assert len(files) == 3, assets  # script, style, icon
    for asset in files:
        assert (await api.call("GET", asset, who=None)).status_code == 200, asset


async def test_failed_logins_are_throttled_but_the_right_password_gets_in(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(5):
        reply = await api.call("GET", "/api/v2/tasks/instances", who="viewer", password="guess")
        assert reply.status_code == 401
    began = time.monotonic()
    throttled = await api.call("GET", "/api/v2/tasks/instances", who="viewer", password="guess")
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert "too many failed logins" in error_of(throttled)["message"]
    assert time.monotonic() - began >= 1.0  # a guess past the limit is slowed down
    # Failures slow guesses down but do not lock the right password out; another user is not affected.
    assert (await api.call("GET", "/api/v2/tasks/instances", who="viewer")).status_code == 200
    assert (await api.call("GET", "/api/v2/tasks/instances", who="manager")).status_code == 200
    # The failed-login log names a user that exists, never a name that is no user's (it may be a password).
    caplog.clear()
    assert (await api.call("GET", "/api/v2/info", who="Hunter2-typed-here", password="x")).status_code == 401
    assert "Hunter2-typed-here" not in caplog.text and "failed login for an unknown user name" in caplog.text


async def test_parallel_logins_with_the_right_password_are_one_check_and_wrong_ones_are_throttled(
    api: Api, task_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's first burst (cold login cache) of parallel takeOver calls is accepted; a burst of wrong
    passwords is throttled, and the right password still gets in afterwards. The takeovers end before their
    first subtask (nothing answers there): their passwords leave the password box all the same."""
    ports = [free_port() for _ in range(8)]  # nothing listens there: each takeover fails in its discovery
    bodies = [{"rootSysPassword": "pw", "address": "127.0.0.1", "port": port} for port in ports]
    async with build_worker(api.client, activities=build_activities(api.runtime), queue=task_queue):
        replies = await asyncio.gather(
            *(api.call("POST", "/api/v2/ob/clusters/takeOver", "manager", body) for body in bodies)
        )
        assert [r.status_code for r in replies] == [200] * 8, [r.text for r in replies if r.status_code != 200]
        assert len({r.json()["data"]["id"] for r in replies}) == 8
        guesses = await asyncio.gather(
            *(api.call("GET", "/api/v2/tasks/instances", "viewer", password=f"guess-{n}") for n in range(8))
        )
        statuses = sorted(r.status_code for r in guesses)
        assert 429 in statuses and set(statuses) <= {401, 429} and statuses.count(401) <= 7, statuses
        assert (await api.call("GET", "/api/v2/tasks/instances", who="viewer")).status_code == 200
        task_ids = [r.json()["data"]["id"] for r in replies]
        for task_id in task_ids:
            assert (await poll(api, task_id, {"SUCCESSFUL", "FAILED"}))["status"] == "FAILED"
    stored = [c["name"] for c in credentials.list_credentials(api.runtime.db, credentials.CLUSTER)]
    assert len(stored) == 8 and all(name.startswith("task ") for name in stored), stored
    monkeypatch.setattr("ob_takeover.api.deps.SWEEP_SECONDS", 0.0)
    listed = await api.data("GET", "/api/v2/tasks/instances?status=FAILED&size=20", "viewer")
    assert sorted(t["id"] for t in listed["contents"]) == sorted(task_ids)
    assert credentials.list_credentials(api.runtime.db, credentials.CLUSTER) == []
    assert {tasks.get_task(api.runtime.db, i)["status"] for i in task_ids} == {"FAILED"}  # type: ignore[index]


async def test_behind_a_trusted_proxy_metrics_need_a_viewer_and_the_forwarded_address_counts(api: Api) -> None:
    """With --trusted-proxies, X-Forwarded-For names the client: a caller that is not on loopback reads the
    metrics only as a viewer, and guesses from one forwarded address do not throttle another."""

    async def connect() -> Client:
        return api.client

    services = Services(
        settings=load_settings(), db=api.runtime.db, vault=api.runtime.vault, auth=Authenticator(api.runtime.db),
        connect=connect,
    )  # fmt: skip
    port = free_port()
    proxied = await serve(create_app(api.runtime.db, services=services), "127.0.0.1", port, trusted_proxies="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    try:

        def get(path: str, forwarded: str, auth: tuple[str, str] | None = None) -> requests.Response:
            return requests.get(base + path, headers={"X-Forwarded-For": forwarded}, auth=auth, timeout=30)

        assert (await asyncio.to_thread(get, "/metrics", "198.51.100.7")).status_code == 401
        viewer = ("viewer", PASSWORDS["viewer"])
        reply = await asyncio.to_thread(get, "/metrics", "198.51.100.7", viewer)
        assert reply.status_code == 200 and "ob_takeover_http_requests_total" in reply.text
        for _ in range(5):
            assert (
                await asyncio.to_thread(get, "/api/v2/info", "198.51.100.8", ("manager", "guess"))
            ).status_code == 401
        assert (await asyncio.to_thread(get, "/api/v2/info", "198.51.100.8", ("manager", "guess"))).status_code == 429
        other = await asyncio.to_thread(get, "/api/v2/info", "198.51.100.9", ("manager", PASSWORDS["manager"]))
        assert other.status_code == 200
    finally:
        await proxied.cleanup()
    # Without it, the anonymous metrics are loopback's.
    assert (await api.call("GET", "/metrics", who=None)).status_code == 200


async def test_the_throttle_counts_the_connection_not_forwarded_headers_nor_respelled_names(api: Api) -> None:
    """X-Forwarded-For is not believed without --trusted-proxies, and `VIEWER`, `viewer ` are one name."""
    # Another spelling is not the user: the right password under it does not log in (and counts as a failure).
    assert (await api.call("GET", "/api/v2/info", who="VIEWER", password=PASSWORDS["viewer"])).status_code == 401
    for number, name in enumerate(["viewer", "viewer ", " Viewer", "vIeWeR"]):
        reply = await asyncio.to_thread(
            requests.get, api.base + "/api/v2/tasks/instances", auth=(name, "guess"), timeout=60,
            headers={"X-Forwarded-For": f"198.51.100.{number}"},
        )  # fmt: skip
        assert reply.status_code == 401, (name, reply.text)
    reply = await asyncio.to_thread(
        requests.get, api.base + "/api/v2/tasks/instances", auth=("Viewer", "guess"), timeout=60,
        headers={"X-Forwarded-For": "198.51.100.99"},
    )  # fmt: skip
    assert reply.status_code == 429


async def test_a_bad_body_answers_400_per_field_and_starts_nothing(api: Api, sim: Simulation) -> None:
    body = {
        "address": "not an address!",
        "port": 70000,
        "rootSysPassword": "Secret'Pw",
        "hostInfo": {"hostTypeId": 0, "credentialId": 1, "vendorExtension": True},
        "someOcpExtension": "ignored",
    }
    reply = await api.call("POST", "/api/v2/ob/clusters/takeOver", "manager", body)
    assert reply.status_code == 400
    error = error_of(reply)
    fields = {e["field"]: e for e in error["subErrors"]}
    assert set(fields) == {"address", "port", "hostInfo.hostTypeId"}, fields
    assert fields["port"]["rejectedValue"] == 70000 and fields["address"]["rejectedValue"] == "not an address!"
    assert "Secret'Pw" not in reply.text
    assert (await api.call("POST", "/api/v2/ob/clusters/takeOver", "manager", [1, 2])).status_code == 400
    malformed = await asyncio.to_thread(
        requests.post, api.base + "/api/v2/ob/clusters/takeOver", data="{oops", timeout=10,
        auth=("manager", PASSWORDS["manager"]), headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert malformed.status_code == 400 and error_of(malformed)["message"] == "the body is not valid JSON"
    # A known field in the wrong case is a typo: refused, not silently replaced by its default.
    typo = await api.call("POST", "/api/v2/ob/clusters/takeOver", "manager", {"switchConfigURL": False})
    assert typo.status_code == 400 and "did you mean switchConfigUrl?" in error_of(typo)["message"]
    # A stored root@sys credential logs in wherever the address points: only an ADMIN may use one.
    stored = {"rootSysCredentialId": 1, "address": sim.address, "port": sim.sql_port}
    refused = await api.call("POST", "/api/v2/ob/clusters/takeOver", "manager", stored)
    assert refused.status_code == 403 and "it needs ADMIN" in error_of(refused)["message"]
    # A credential id that names nothing is refused up front, naming the field, before anything is written.
    for path in ("/api/v2/ob/clusters/takeOver", "/api/v2/ob/clusters/takeOverPreCheck"):
        missing = await api.call("POST", path, "admin", stored)
        assert missing.status_code == 400, missing.text
        assert [e["field"] for e in error_of(missing)["subErrors"]] == ["rootSysCredentialId"]
        assert "credential 1 does not exist" in error_of(missing)["message"]
    assert (await api.call("GET", f"/api/v2/tasks/instances/{2**64}", "viewer")).status_code == 400
    assert api.runtime.db.query("SELECT * FROM tasks") == []
    assert api.runtime.db.query("SELECT * FROM credentials WHERE kind = 'CLUSTER'") == []
    listed = await api.data("GET", "/api/v2/tasks/instances", "viewer")
    assert listed == {"contents": [], "page": {"number": 1, "size": 10, "totalElements": 0, "totalPages": 0}}
    assert (await api.call("GET", "/api/v2/tasks/instances/424242", "viewer")).status_code == 404
    assert (await api.call("GET", "/api/v2/tasks/instances?page=0", "viewer")).status_code == 400
    beyond = await api.call("GET", f"/api/v2/tasks/instances?page={10**20}&size=1000", "viewer")
    assert beyond.status_code == 400 and error_of(beyond)["subErrors"][0]["field"] == "page", beyond.text


async def setup_hosts(api: Api, sim: Simulation) -> tuple[int, int]:
    """A host type and an SSH-key credential, created the way installers do it (the key in `passphrase`)."""
    host_type = await api.data("POST", "/api/v2/compute/hostTypes", body={"name": "sim-hosts", "description": "x"})
    key = Path(sim.ready["ssh"]["private_key_file"]).read_text()
    credential = await api.data(
        "POST",
        "/api/v2/profiles/me/credentials",
        body={
            "targetType": "HOST",
            "name": "sim-admin",
            "sshCredentialProperty": {
                "type": "PRIVATE_KEY",
                "username": sim.ready["ssh"]["username"],
                "passphrase": key,
            },
            "hosts": [host["address"] for host in sim.ready["hosts"]],
        },
    )
    assert isinstance(host_type["id"], int) and isinstance(credential["id"], int)
    listed = await api.data("GET", "/api/v2/profiles/me/credentials")
    assert [(c["id"], c["targetType"], c["name"]) for c in listed["contents"]] == [
        (credential["id"], "HOST", "sim-admin")
    ]
    assert "BEGIN" not in json.dumps(listed)
    return int(host_type["id"]), int(credential["id"])


def takeover_body(sim: Simulation, host_type: int, credential: int) -> dict[str, Any]:
    return {
        "rootSysPassword": sim.root_password,
        "proxyroPassword": "Proxy-ro-Pw-9",
        "address": sim.address,
        "port": sim.sql_port,
        "hostInfo": {"hostTypeId": host_type, "credentialId": credential, "sshPort": sim.ssh_port},
    }


def read_as_an_ocp_client(base: str, auth: tuple[str, str], name: str, servers: list[tuple[str, int, int, str]]) -> int:
    """What diagnostic and installer tools read after a takeover, as OCP's API reference documents it
    ("Query clusters", "Query OBServer nodes", "Query zones", "Query hosts", git-info), with `requests` and
    Basic auth only; returns the cluster's id."""

    def get(path: str, **params: Any) -> Any:
        reply = requests.get(base + path, params=params, auth=auth, timeout=30)
        assert reply.status_code == 200, (path, reply.text)
        body = reply.json()
        return body.get("data", body)

    assert get("/api/v2/git-info")["commitId"]  # the site check
    listed = get("/api/v2/ob/clusters", name=name.upper(), size=2000)
    (cluster,) = [c for c in listed["contents"] if c["name"] == name]
    assert listed["page"]["totalElements"] == 1 and listed["page"]["number"] == 1
    detail = get(f"/api/v2/ob/clusters/{cluster['id']}")
    assert detail["obVersion"].startswith("4.") and detail["type"] == "PRIMARY" and detail["status"] == "RUNNING"
    zones = {zone["name"]: zone for zone in detail["zones"]}
    assert sorted(zones) == sorted({zone for *_, zone in servers})
    assert detail["serverCount"] == len(servers) and detail["regionCount"] >= 1 and detail["tenantCount"] >= 1
    for zone in zones.values():
        expected = sorted((ip, rpc) for ip, rpc, _, z in servers if z == zone["name"])
        assert sorted((s["ip"], s["port"]) for s in zone["servers"]) == expected and zone["serverCount"] == len(
            expected
        )
        assert zone["regionName"] and zone["idcName"]
    roots = detail["rootServers"]
    assert roots and {r["role"] for r in roots} <= {"LEADER", "FOLLOWER"} and "LEADER" in {r["role"] for r in roots}
    assert {r["address"] for r in roots} <= {f"{ip}:{rpc}" for ip, rpc, _, _ in servers}
    assert all(isinstance(r["sql_port"], int) for r in roots)
    assert detail["configUrl"].endswith(f"ObCluster={name}&ObClusterId={detail['obClusterId']}")
    listed_servers = get(f"/api/v2/ob/clusters/{cluster['id']}/servers")["contents"]
    assert sorted((s["ip"], s["port"], s["sqlPort"], s["zoneName"]) for s in listed_servers) == sorted(servers)
    assert all(s["status"] == "RUNNING" and s["hostId"] and s["version"] for s in listed_servers)
    assert sum(s["withRootserver"] for s in listed_servers) >= 1
    region = listed_servers[0]["regionName"]
    assert {
        s["regionName"] for s in get(f"/api/v2/ob/clusters/{cluster['id']}/servers", regionName=region)["contents"]
    } == {region}
    assert get(f"/api/v2/ob/clusters/{cluster['id']}/servers", idcName="no-such-idc")["contents"] == []
    assert [z["name"] for z in get(f"/api/v2/ob/clusters/{cluster['id']}/zones")["contents"]] == sorted(zones)
    hosts = get("/api/v2/compute/hosts", includedServiceType="OB_CLUSTER", size=100)["contents"]
    service = f"{name}:{detail['obClusterId']}"
    assert sorted(h["innerIpAddress"] for h in hosts) == sorted({ip for ip, *_ in servers})
    for host in hosts:
        assert host["status"] == "ONLINE" and host["sshPort"] > 0 and host["typeId"] and host["typeName"]
        assert [s["name"] for s in host["services"]] == [service] and host["services"][0]["type"] == "OB_CLUSTER"
        assert not {"credentialId", "password", "privateKey", "passphrase"} & set(host)
        assert get(f"/api/v2/compute/hosts/{host['id']}")["innerIpAddress"] == host["innerIpAddress"]
    assert get("/api/v2/compute/hosts", keyword=service, excludedServiceType="OB_CLUSTER")["contents"] == []
    return int(cluster["id"])


async def poll(api: Api, task_id: int, until: set[str], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, Any] = await api.data("GET", f"/api/v2/tasks/instances/{task_id}", "viewer")
        if task["status"] in until:
            return task
        assert time.monotonic() < deadline, task["status"]
        await asyncio.sleep(0.5)


async def test_a_takeover_through_the_api_alone(api: Api, sim: Simulation, task_queue: str) -> None:
    host_type, credential = await setup_hosts(api, sim)
    body = takeover_body(sim, host_type, credential)
    # A host credential that names no hosts would log in wherever the cluster points: an ADMIN's call only.
    unbound = await api.data(
        "POST", "/api/v2/profiles/me/credentials",
        body={"targetType": "HOST", "name": "anywhere", "sshCredentialProperty": {
            "type": "PASSWORD", "username": "admin", "passphrase": "Ssh-pw-1"}},
    )  # fmt: skip
    assert unbound["hosts"] == []
    aimed = {**body, "hostInfo": {**body["hostInfo"], "credentialId": unbound["id"]}}
    for path in ("/api/v2/ob/clusters/takeOverPreCheck", "/api/v2/ob/clusters/takeOver"):
        refused = await api.call("POST", path, "manager", aimed)
        assert refused.status_code == 403 and "names no hosts" in error_of(refused)["message"], refused.text
    async with build_worker(api.client, activities=build_activities(api.runtime), queue=task_queue):
        report = await api.data("POST", "/api/v2/ob/clusters/takeOverPreCheck", "manager", body)
        assert report["passed"] is True and report["clusterName"] == "obcluster"
        # The precheck's passwords went through the password box and are gone from it again.
        assert api.runtime.db.query("SELECT * FROM credentials WHERE kind = 'CLUSTER'") == []
        reply = await api.call("POST", "/api/v2/ob/clusters/takeOver", "manager", {**body, "undocumentedField": 1})
        assert reply.status_code == 200, reply.text
        started = reply.json()["data"]
        task_id, cluster_id = started["id"], started["clusterId"]
        assert isinstance(task_id, int) and isinstance(cluster_id, int)
        assert started["status"] == "RUNNING" and started["creator"] == "manager"
        # A second takeover of the same cluster while the first runs names the holder.
        again = await api.call("POST", "/api/v2/ob/clusters/takeOver", "manager", body)
        assert again.status_code == 409
        assert f"being taken over by task {task_id}" in error_of(again)["message"]
        task = await poll(api, task_id, {"SUCCESSFUL", "FAILED"})
        assert task["status"] == "SUCCESSFUL", task
        assert task["id"] == task_id and task["clusterId"] == cluster_id and task["creator"] == "manager"
        assert task["createTime"] and task["finishTime"] and task["subtasks"][0]["upstreams"] == []
        prepare = next(s for s in task["subtasks"] if s["name"] == "Prepare take over cluster")
        log = await api.data("GET", f"/api/v2/tasks/instances/{task_id}/subtasks/{prepare['id']}/log", "viewer")
        assert "precheck passed" in log["log"] and log["log"].startswith("############{EXECUTE}")
        handle = api.client.get_workflow_handle(workflow_id_for(sim.address, sim.sql_port))
        await keep_history(handle, "api_takeover_3x2")
    # The ids are the metadb's: task registry, cluster record, workflow.
    row = tasks.get_task(api.runtime.db, task_id)
    assert row is not None and row["cluster_id"] == cluster_id and row["status"] == "SUCCESSFUL"
    assert row["creator"] == "manager" and row["trace_id"] == reply.json()["traceId"]
    cluster = await api.data("GET", f"/api/v2/ob/clusters/{cluster_id}", "viewer")
    assert (cluster["name"], cluster["status"]) == ("obcluster", "RUNNING")
    servers = [(s["address"], s["rpc_port"], s["sql_port"], s["zone"]) for s in sim.ready["servers"]]
    found = await asyncio.to_thread(
        read_as_an_ocp_client, api.base, ("viewer", PASSWORDS["viewer"]), "obcluster", servers
    )
    assert found == cluster_id
    listed = await api.data("GET", f"/api/v2/tasks/instances?clusterId={cluster_id}&status=SUCCESSFUL", "viewer")
    assert [t["id"] for t in listed["contents"]] == [task_id]
    assert listed["contents"][0]["creator"] == {"name": "manager"}
    assert listed["contents"][0]["cluster"] == {"id": cluster_id, "name": "obcluster", "obClusterId": 1}
    assert [s["id"] for s in listed["contents"][0]["subtasks"]] == [s["id"] for s in task["subtasks"]]
    # The root password went into the password box: Temporal's history has a reference, never the password.
    events = [event async for event in api.client.get_workflow_handle(row["workflow_id"]).fetch_history_events()]
    codec = EncryptionCodec(load_codec_keys(load_settings()))
    start = events[0].workflow_execution_started_event_attributes
    decoded = await codec.decode(list(start.input.payloads))
    assert sim.root_password.encode() not in b"".join(p.data for p in decoded)
    assert b"rootSysCredentialId" in b"".join(p.data for p in decoded)
    assert b"proxyroCredentialId" in b"".join(p.data for p in decoded) and b"Proxy-ro-Pw-9" not in b"".join(
        p.data for p in decoded
    )
    # The passwords stored for the task's time are gone; the cluster keeps its own, bound to its endpoint.
    names = {row["name"] for row in credentials.list_credentials(api.runtime.db, credentials.CLUSTER)}
    assert names == {"obcluster:1:root@sys", "obcluster:1:ocp_monitor", "obcluster:1:proxyro"}, names
    stored = credentials.describe_credential(api.runtime.db, kind=credentials.CLUSTER, name="obcluster:1:root@sys")
    assert stored is not None and stored["cluster_id"] == cluster_id
    assert stored["endpoints"] == f'["{sim.address}:{sim.sql_port}"]'
    # Clients print <base>/task/<id> for a person: it leads to the workflow in the Temporal UI.
    page = await api.call("GET", f"/task/{task_id}", "viewer")
    assert page.status_code == 302
    assert page.headers["Location"].startswith(
        f"http://127.0.0.1:8233/namespaces/default/workflows/{row['workflow_id']}/"
    )
    # A managed cluster is not taken over twice.
    again = await api.call("POST", "/api/v2/ob/clusters/takeOver", "manager", body)
    assert again.status_code == 409 and f"already managed here as cluster {cluster_id}" in error_of(again)["message"]
    # It moves out of management as in OCP (a viewer may not; a value that would keep its records is refused).
    move_out = f"/api/v2/ob/clusters/{cluster_id}/moveOut"
    assert (await api.call("POST", move_out, "viewer", {})).status_code == 403
    refused = await api.call("POST", move_out, "manager", {"retainClusterInfo": True})
    assert refused.status_code == 400 and "retainClusterInfo" in refused.text
    # Pointing the cluster's servers at another config server, or at none (""), is an administrator's call,
    # and only over http(s).
    for target in ("http://127.0.0.9/services", ""):
        elsewhere = await api.call("POST", move_out, "manager", {"targetConfigAddress": target})
        assert elsewhere.status_code == 403, elsewhere.text
    not_http = await api.call("POST", move_out, "admin", {"targetConfigAddress": "file:///etc/passwd"})
    assert not_http.status_code == 400 and "targetConfigAddress" in not_http.text, not_http.text
    # The release logs in with the stored root password: only an ADMIN or whoever started the takeover asks.
    users.add_user(api.runtime.db, "manager2", users.TASK_MANAGER, "Manager2-pw-123")
    other = await api.call("POST", move_out, "manager2", {}, password="Manager2-pw-123")
    assert other.status_code == 403 and "or to have started its takeover" in error_of(other)["message"]
    assert sim.state()["parameters"]["obconfig_url"] != ""  # nothing was released
    async with build_worker(api.client, activities=build_activities(api.runtime), queue=task_queue):
        moving = await api.data("POST", move_out, "admin", {"targetConfigAddress": ""})
        assert moving["name"] == "Move out OB cluster" and moving["clusterId"] == cluster_id
        released = await poll(api, moving["id"], {"SUCCESSFUL", "FAILED"})
    assert released["status"] == "SUCCESSFUL", released
    assert (await api.call("GET", f"/api/v2/ob/clusters/{cluster_id}", "viewer")).status_code == 404
    # Released: an OCP client finds the cluster no more, and its hosts are no longer held by it.
    gone = await asyncio.to_thread(
        requests.get, api.base + "/api/v2/ob/clusters", params={"name": "OBCLUSTER"}, timeout=30,
        auth=("viewer", PASSWORDS["viewer"]),
    )  # fmt: skip
    assert gone.status_code == 200 and gone.json()["data"]["contents"] == []
    hosts = await api.data("GET", "/api/v2/compute/hosts?includedServiceType=OB_CLUSTER", "viewer")
    assert hosts["contents"] == []
    assert sim.state()["parameters"]["obconfig_url"] == ""
    # proxyro's password stays, for OBProxy and the next takeover; the takeover's other credentials are gone.
    kept = credentials.list_credentials(api.runtime.db, credentials.CLUSTER)
    assert [c["name"] for c in kept] == ["obcluster:1:proxyro"]


async def test_a_failed_subtask_is_retried_through_the_api(api: Api, sim: Simulation, task_queue: str) -> None:
    host_type, credential = await setup_hosts(api, sim)
    body = takeover_body(sim, host_type, credential)
    # "Sync cluster info" reads the zones after "Attach cluster attributes" did.
    sim.fault("SELECT ZONE, STATUS, REGION, IDC, TYPE", error=4012, message="Timeout", times=1, skip=1)
    async with build_worker(api.client, activities=build_activities(api.runtime), queue=task_queue):
        task_id = (await api.data("POST", "/api/v2/ob/clusters/takeOver", "manager", body))["id"]
        task = await poll(api, task_id, {"SUCCESSFUL", "FAILED"})
        assert task["status"] == "FAILED"
        failed = next(s for s in task["subtasks"] if s["status"] == "FAILED")
        assert failed["name"] == "Sync cluster info"
        log = await api.data("GET", f"/api/v2/tasks/instances/{task_id}/subtasks/{failed['id']}/log", "viewer")
        assert "OceanBase error 4012" in log["log"]
        # Refusals answer 400 with the workflow's reason; unknown ids 404.
        done = next(s for s in task["subtasks"] if s["status"] == "SUCCESSFUL" and s["name"] != "Wait node")
        refused = await api.call("POST", f"/api/v2/tasks/instances/{task_id}/subtasks/{done['id']}/skip", "manager")
        assert refused.status_code == 400 and "refused" in error_of(refused)["message"]
        assert (await api.call("POST", "/api/v2/tasks/instances/999999/retry", "manager")).status_code == 404
        missing = await api.call("GET", f"/api/v2/tasks/instances/{task_id}/subtasks/1/log", "viewer")
        assert missing.status_code == 404
        subtask = await api.data("POST", f"/api/v2/tasks/instances/{task_id}/subtasks/{failed['id']}/retry", "manager")
        assert subtask["id"] == failed["id"] and subtask["runTime"] == 2
        task = await poll(api, task_id, {"SUCCESSFUL", "FAILED"})
        assert task["status"] == "SUCCESSFUL", task


@pytest.mark.unit
def test_users_have_roles_and_slow_hashes(tmp_path: Path) -> None:
    from metadb.db import Database
    from metadb.migrate import migrate

    db = Database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    migrate(db)
    user_id = users.add_user(db, "ops", users.TASK_MANAGER, "Long-enough-1")
    stored = db.one("SELECT password_hash FROM users WHERE id = ?", (user_id,))
    assert stored is not None and stored["password_hash"].startswith("scrypt$16384$8$1$")
    assert "Long-enough-1" not in stored["password_hash"]
    found = users.authenticate(db, "ops", "Long-enough-1")
    assert found is not None and found["role"] == "TASK_MANAGER" and "password_hash" not in found
    assert users.authenticate(db, "ops", "wrong") is None and users.authenticate(db, "nobody", "x") is None
    with pytest.raises(ValueError, match="at least 8"):
        users.add_user(db, "short", users.ADMIN, "short")
    assert users.role_allows(users.ADMIN, users.TASK_VIEWER) and not users.role_allows(
        users.TASK_VIEWER, users.TASK_MANAGER
    )
    assert base64.b64decode(stored["password_hash"].split("$")[4])
