"""deploy/k8s renders with kustomize (the base and the example overlay), every object is valid against
Kubernetes' schemas, and the manifests keep what the README promises: probes on the ports the processes
listen on, a worker stop grace longer than its subtasks', disruption budgets, no secret values, and the
clusters' network reaching the config server (8082) and nothing else."""

from __future__ import annotations

import functools
import ipaddress
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from contracts.settings import Settings, load_settings
from ob_takeover.service import SHUTDOWN_GRACE_SECONDS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = Path(sys.executable).parent / "kubectl"
KUBERNETES_VERSION = "1.33.0"
BASE = ROOT / "deploy/k8s/base"
EXAMPLE = ROOT / "deploy/k8s/overlays/example"
RENDERINGS = pytest.mark.parametrize("path", [BASE, EXAMPLE], ids=["base", "example"])

# The clusters' networks: the base's placeholder and the example overlay's two.
CLUSTER_ADDRESSES = {BASE: ["10.0.0.5"], EXAMPLE: ["10.20.3.4", "192.168.50.9"]}
# Neither a cluster nor a pod: reaches nothing.
ELSEWHERE = "203.0.113.7"
SECRET_VARIABLES = {
    str(info.json_schema_extra["env"])
    for name, info in Settings.model_fields.items()
    if isinstance(info.json_schema_extra, dict) and (info.json_schema_extra["secret"] or name == "metadb")
}
SETTING_VARIABLES = {
    str(info.json_schema_extra["env"])
    for info in Settings.model_fields.values()
    if isinstance(info.json_schema_extra, dict)
}


@functools.cache
def render(path: Path) -> tuple[dict[str, Any], ...]:
    out = subprocess.run([str(KUBECTL), "kustomize", str(path)], check=True, capture_output=True, text=True, timeout=60)
    return tuple(obj for obj in yaml.safe_load_all(out.stdout) if obj)


def objects(path: Path, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in render(path) if obj["kind"] == kind]


def deployment(path: Path, name: str) -> dict[str, Any]:
    [found] = [d for d in objects(path, "Deployment") if d["metadata"]["name"] == name]
    return found


def container_environment(path: Path, container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the process sees it: its ConfigMaps, then its own `env` (which wins);
    a Secret's value is a placeholder, and optional Secret keys are left out."""
    maps = {m["metadata"]["name"]: m.get("data", {}) for m in objects(path, "ConfigMap")}
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environ.update(maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            environ[var["name"]] = var["value"]
        elif not var["valueFrom"]["secretKeyRef"].get("optional", False):
            environ[var["name"]] = "from-a-secret"
    return environ


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def listen_port(address: str) -> int:
    return int(address.rpartition(":")[2])


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@RENDERINGS
def test_every_object_validates_against_the_kubernetes_schemas(path: Path) -> None:
    kinds = set()
    for obj in render(path):
        # Strict: an unknown or misspelt field fails; a kind without a schema fails too.
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        kinds.add(obj["kind"])
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"} <= kinds


@RENDERINGS
def test_probes_ask_the_health_endpoints_on_the_port_the_process_listens_on(path: Path) -> None:
    worker = deployment(path, "ob-takeover-worker")["spec"]["template"]["spec"]["containers"][0]
    service = deployment(path, "ob-takeover-service")["spec"]["template"]["spec"]["containers"][0]
    listening = {
        "worker": (listen_port(container_environment(path, worker)["OB_TAKEOVER_METRICS_LISTEN"]), "HTTP"),
        "service": (
            listen_port(option(service["command"], "--listen")),
            "HTTPS" if "--tls-cert" in service["command"] else "HTTP",
        ),
    }
    for container in (worker, service):
        port, scheme = listening[container["name"]]
        probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes["livenessProbe"]["path"] == "/healthz", container["name"]
        assert probes["readinessProbe"]["path"] == "/readyz", container["name"]
        for kind, probe in probes.items():
            assert resolve_port(container, probe["port"]) == port, (container["name"], kind)
            assert probe["scheme"] == scheme, (container["name"], kind)


@RENDERINGS
def test_processes_get_valid_settings_and_time_to_stop(path: Path) -> None:
    for name in ("ob-takeover-worker", "ob-takeover-service"):
        pod = deployment(path, name)["spec"]["template"]["spec"]
        environ = container_environment(path, pod["containers"][0])
        # A misspelt variable would be ignored by the process: every OB_TAKEOVER_ one is a setting (TEMPORAL_TLS_*
        # and the like are Temporal's client configuration).
        ours = {variable for variable in environ if variable.startswith("OB_TAKEOVER_")}
        assert ours <= SETTING_VARIABLES, ours - SETTING_VARIABLES
        settings = load_settings(environ)
        assert settings.metadb == "from-a-secret" and settings.master_key and settings.codec_key
        assert settings.public_url.rstrip("/").endswith(":8082"), "the observers' URL is the config server's"
        if name == "ob-takeover-worker":
            assert settings.log_format == "json"
            assert pod["terminationGracePeriodSeconds"] > settings.stop_grace
        else:
            pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
            assert pre_stop[0] == "sleep"
            assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + SHUTDOWN_GRACE_SECONDS


@RENDERINGS
def test_no_secret_value_is_in_the_manifests(path: Path) -> None:
    assert not objects(path, "Secret"), "Secrets are created by the platform team, never rendered"
    for config_map in objects(path, "ConfigMap"):
        assert not set(config_map.get("data", {})) & SECRET_VARIABLES, config_map["metadata"]["name"]
    for name in ("ob-takeover-worker", "ob-takeover-service"):
        container = deployment(path, name)["spec"]["template"]["spec"]["containers"][0]
        env = {var["name"]: var for var in container["env"]}
        for variable in SECRET_VARIABLES & set(env):
            assert "secretKeyRef" in env[variable].get("valueFrom", {}), (name, variable)
        assert {"OB_TAKEOVER_METADB", "OB_TAKEOVER_MASTER_KEY", "OB_TAKEOVER_CODEC_KEY"} <= set(env)
    assert "mysql://" not in yaml.safe_dump_all(render(path))


@RENDERINGS
def test_each_deployment_has_a_disruption_budget_that_lets_a_drain_proceed(path: Path) -> None:
    budgets = objects(path, "PodDisruptionBudget")
    for name in ("ob-takeover-worker", "ob-takeover-service"):
        spec = deployment(path, name)["spec"]
        labels = spec["template"]["metadata"]["labels"]
        [budget] = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert 1 <= budget["spec"]["minAvailable"] < spec["replicas"], name


@dataclass(frozen=True)
class Source:
    """Where a connection comes from: an address outside the cluster, or a pod."""

    address: str | None = None
    namespace: str = ""
    namespace_labels: dict[str, str] = field(default_factory=dict)
    pod_labels: dict[str, str] = field(default_factory=dict)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert "matchExpressions" not in selector, "this check reads matchLabels only"
    return bool(selector.get("matchLabels", {}).items() <= labels.items())


def admits(peer: dict[str, Any], source: Source, namespace: str) -> bool:
    if "ipBlock" in peer:
        if source.address is None:
            return False
        address = ipaddress.ip_address(source.address)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if source.address is not None:
        return False
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], source.namespace_labels)
    else:
        in_namespace = source.namespace == namespace
    return in_namespace and selects(peer.get("podSelector", {}), source.pod_labels)


def reachable_ports(path: Path, deployment_name: str, source: Source) -> set[int]:
    """The ports of the deployment's pods that `source` may connect to, by the rendered NetworkPolicies."""
    template = deployment(path, deployment_name)["spec"]["template"]
    labels, container = template["metadata"]["labels"], template["spec"]["containers"][0]
    all_ports = {int(p["containerPort"]) for p in container["ports"]}
    policies = [
        p
        for p in objects(path, "NetworkPolicy")
        if selects(p["spec"]["podSelector"], labels) and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not policies:
        return all_ports
    ports: set[int] = set()
    for policy in policies:
        namespace = policy["metadata"].get("namespace", "")
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from", [])
            if peers and not any(admits(peer, source, namespace) for peer in peers):
                continue
            if "ports" not in rule:
                return all_ports
            for port in rule["ports"]:
                assert port.get("protocol", "TCP") == "TCP" and "endPort" not in port
                ports.add(resolve_port(container, port["port"]))
    return ports


def app_namespace(path: Path) -> str:
    return str(deployment(path, "ob-takeover-service")["metadata"].get("namespace", ""))


def pod_in(namespace: str, **pod_labels: str) -> Source:
    return Source(
        namespace=namespace,
        namespace_labels={"kubernetes.io/metadata.name": namespace},
        pod_labels=pod_labels,
    )


@RENDERINGS
def test_the_clusters_network_reaches_the_config_server_only(path: Path) -> None:
    for address in CLUSTER_ADDRESSES[path]:
        observer = Source(address=address)
        assert reachable_ports(path, "ob-takeover-service", observer) == {8082}, address
        assert reachable_ports(path, "ob-takeover-worker", observer) == set(), address
    stranger = Source(address=ELSEWHERE)
    assert reachable_ports(path, "ob-takeover-service", stranger) == set()
    assert reachable_ports(path, "ob-takeover-worker", stranger) == set()
    # What is exposed outside the Kubernetes cluster is the config server alone.
    for service in objects(path, "Service"):
        if service["spec"].get("type", "ClusterIP") in ("LoadBalancer", "NodePort"):
            assert [p["port"] for p in service["spec"]["ports"]] == [8082], service["metadata"]["name"]


@RENDERINGS
def test_platform_clients_and_monitoring_reach_what_they_need(path: Path) -> None:
    here = app_namespace(path)
    client = pod_in(here, **{"ob-takeover/api-client": "true"})
    assert reachable_ports(path, "ob-takeover-service", client) == {8080, 8081}
    assert reachable_ports(path, "ob-takeover-service", pod_in(here)) == set(), "an unlabelled pod"
    assert reachable_ports(path, "ob-takeover-service", pod_in("ingress-nginx")) == {8080, 8081}
    monitoring = pod_in("monitoring")
    assert reachable_ports(path, "ob-takeover-worker", monitoring) == {9464}
    assert reachable_ports(path, "ob-takeover-service", monitoring) == {8080}


def test_the_example_overlay_sets_what_the_base_leaves_as_placeholders() -> None:
    worker = deployment(EXAMPLE, "ob-takeover-worker")
    environ = container_environment(EXAMPLE, worker["spec"]["template"]["spec"]["containers"][0])
    assert ".invalid" not in environ["OB_TAKEOVER_PUBLIC_URL"]
    assert environ["TEMPORAL_ADDRESS"] == "temporal-frontend.temporal.svc:7233"
    assert worker["metadata"]["namespace"] == "ob-takeover"
    example = [c for d in objects(EXAMPLE, "Deployment") for c in d["spec"]["template"]["spec"]["containers"]]
    assert {c["image"] for c in example} == {"registry.example.com/platform/ob-takeover:0.1.0"}
    base = [c for d in objects(BASE, "Deployment") for c in d["spec"]["template"]["spec"]["containers"]]
    assert {c["image"] for c in base} == {"ob-takeover:latest"}, "the Dockerfile's image until an overlay sets it"
    assert sorted(shlex.join(c["command"]) for c in base) == [
        "ob-takeover serve --listen 0.0.0.0:8080 --codec-listen 0.0.0.0:8081 --config-listen 0.0.0.0:8082 "
        "--insecure-http",
        "python worker.py",
    ]
