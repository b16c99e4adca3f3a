"""ob-takeover's settings: one object, loaded once per process, passed down.

Where a value comes from, weakest first: the default here; a TOML config file (`--config F`,
`OB_TAKEOVER_CONFIG`, or `ob-takeover.toml` in the current directory), whose relative paths are
relative to the file; the environment variable named next to each setting. The Temporal connection
(address, namespace, TLS, API key) also follows Temporal's own client configuration profiles
(`temporal.toml`, `TEMPORAL_PROFILE`, `TEMPORAL_*` variables); a value set here wins over a profile's.

`ob-takeover config show` prints the effective settings, where each came from, secrets masked.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.tls import TlsMode

CONFIG_ENV = "OB_TAKEOVER_CONFIG"
DEFAULT_CONFIG_FILE = "ob-takeover.toml"
MASK = "******"


def _setting(default: Any, env: str, help: str, *, secret: bool = False, path: bool = False, **rules: Any) -> Any:
    return Field(default, description=help, json_schema_extra={"env": env, "secret": secret, "path": path}, **rules)


class Settings(BaseModel):
    """Every setting of the worker, the HTTP service and the CLI."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temporal_address: str | None = _setting(
        None, "TEMPORAL_ADDRESS", "Temporal frontend host:port (else the Temporal profile's, else localhost:7233)"
    )
    temporal_namespace: str | None = _setting(
        None, "TEMPORAL_NAMESPACE", "Temporal namespace (else the Temporal profile's, else default)"
    )
    temporal_profile: str | None = _setting(None, "TEMPORAL_PROFILE", "Temporal client configuration profile to use")
    temporal_ui: str = _setting("http://127.0.0.1:8233", "TEMPORAL_UI", "Temporal UI base URL, for task links")
    task_queue: str = _setting("ob-takeover", "OB_TAKEOVER_TASK_QUEUE", "task queue of the worker and the workflows")
    metadb: str = _setting(
        "var/metadb.sqlite",
        "OB_TAKEOVER_METADB",
        "metadb: a SQLite path (`sqlite:///path`) or `mysql://user:pass@host:port/db`",
        path=True,
    )
    master_key: str | None = _setting(
        None, "OB_TAKEOVER_MASTER_KEY", "the password box's master key, base64 of 32 bytes", secret=True
    )
    master_key_file: str = _setting(
        "var/master.key",
        "OB_TAKEOVER_MASTER_KEY_FILE",
        "used when the master key is not set; created 0600 on first start",
        path=True,
    )
    master_key_previous: str | None = _setting(
        None,
        "OB_TAKEOVER_MASTER_KEY_PREVIOUS",
        "earlier master keys (comma-separated base64), kept for reading secrets during a key rotation",
        secret=True,
    )
    codec_key: str | None = _setting(
        None,
        "OB_TAKEOVER_CODEC_KEY",
        "the payload codec's key, base64 of 32 bytes (a separate key from the master key)",
        secret=True,
    )
    codec_key_file: str = _setting(
        "var/codec.key",
        "OB_TAKEOVER_CODEC_KEY_FILE",
        "used when the codec key is not set; created 0600; further lines are older keys kept for decoding",
        path=True,
    )
    codec_old_keys: str | None = _setting(
        None, "OB_TAKEOVER_CODEC_OLD_KEYS", "older codec keys (comma-separated base64), with the codec key", secret=True
    )
    codec_token: str | None = _setting(
        None,
        "OB_TAKEOVER_CODEC_TOKEN",
        "when set, the codec answers only calls that send it as their Authorization header (`--codec-auth`)",
        secret=True,
    )
    codec_cors_origins: str = _setting(
        "http://127.0.0.1:8233,http://localhost:8233",
        "OB_TAKEOVER_CODEC_CORS_ORIGINS",
        "origins allowed to call the codec server (the Temporal UI)",
    )
    public_url: str = _setting(
        "http://127.0.0.1:8080",
        "OB_TAKEOVER_PUBLIC_URL",
        "base URL of the HTTP service, used in the clusters' `obconfig_url`",
    )
    known_hosts: str = _setting(
        "~/.ssh/known_hosts",
        "OB_TAKEOVER_KNOWN_HOSTS",
        "known_hosts file that host keys are checked against",
        path=True,
    )
    host_key_policy: Literal["known_hosts", "tofu"] = _setting(
        "known_hosts",
        "OB_TAKEOVER_HOST_KEY_POLICY",
        "`tofu`: trust a host's key on first contact, record it in the metadb, refuse a changed key after",
    )
    cluster_tls: TlsMode = _setting(
        "preferred",
        "OB_TAKEOVER_CLUSTER_TLS",
        "TLS to the clusters' sys tenant: off, preferred (when offered), required, verify_ca, verify_identity",
    )
    cluster_tls_ca: str = _setting(
        "",
        "OB_TAKEOVER_CLUSTER_TLS_CA",
        "CA file that cluster certificates are checked against (verify_ca, verify_identity); empty: the system's",
        path=True,
    )
    metrics_listen: str = _setting(
        "",
        "OB_TAKEOVER_METRICS_LISTEN",
        "the worker's metrics and health port (host:port): /metrics, /healthz, /readyz; empty: none",
    )
    log_format: Literal["human", "json"] = _setting(
        "human",
        "OB_TAKEOVER_LOG_FORMAT",
        "`json`: one JSON object a line with the task, subtask, workflow and trace ids",
    )
    otlp_endpoint: str = _setting(
        "",
        "OB_TAKEOVER_OTLP_ENDPOINT",
        "OpenTelemetry collector (OTLP over HTTP, e.g. http://127.0.0.1:4318) for traces; empty: none sent",
    )
    ssh_agent: bool = _setting(
        False,
        "OB_TAKEOVER_SSH_AGENT",
        "offer the keys of the worker's SSH agent (SSH_AUTH_SOCK) to hosts; off: only the credential's own",
    )
    ssh_config_file: str = _setting(
        "",
        "OB_TAKEOVER_SSH_CONFIG_FILE",
        "an OpenSSH client config file to apply to host logins; empty: none (~/.ssh/config is not read)",
        path=True,
    )
    poll_interval: float = _setting(
        2.0, "OB_TAKEOVER_POLL_INTERVAL", "seconds between polls of io calibration and cluster accessibility", gt=0
    )
    timeout_scale: float = _setting(
        1.0,
        "OB_TAKEOVER_TIMEOUT_SCALE",
        "multiplies every subtask and heartbeat timeout (tests use 0.01; floor 3 s); the task JSON shows the table's",
        gt=0,
    )
    retry_interval: float = _setting(
        1.0, "OB_TAKEOVER_RETRY_INTERVAL", "first backoff between attempts of a transient failure, seconds", gt=0
    )
    fleet_history_events: int = _setting(
        4000,
        "OB_TAKEOVER_FLEET_HISTORY_EVENTS",
        "a fleet takeover's run continues as new once its history has this many events",
        ge=100,
        le=50000,
    )
    verify_interval: float = _setting(
        3600.0,
        "OB_TAKEOVER_VERIFY_INTERVAL",
        "seconds between scheduled verifications of each managed cluster (a Temporal Schedule per cluster)",
        ge=10,
    )
    verify_reconcile_seconds: float = _setting(
        30.0,
        "OB_TAKEOVER_VERIFY_RECONCILE_SECONDS",
        "how often a worker brings the verification schedules in step with the managed clusters",
        gt=0,
    )
    stop_grace: float = _setting(
        10.0,
        "OB_TAKEOVER_STOP_GRACE",
        "seconds a stopping worker (SIGTERM) lets running subtasks finish before cancelling them",
        ge=0,
        le=3600,
    )
    workflow_sandbox: bool = _setting(
        True,
        "OB_TAKEOVER_WORKFLOW_SANDBOX",
        "run workflows in Temporal's sandbox, which checks each run for non-deterministic calls; off saves about "
        "0.09 CPU-s per 3x2 takeover (bench/engine_cost.py), for a version whose histories replayed sandboxed",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _setting(
        "INFO", "OB_TAKEOVER_LOG_LEVEL", "log level of the worker and the service"
    )
    root_password: str | None = _setting(
        None,
        "OB_TAKEOVER_ROOT_PASSWORD",
        "root@sys password for `ob-takeover start|precheck` instead of the prompt (scripts)",
        secret=True,
    )
    # Where the config file was, if one was read (not a setting of its own).
    config_file: str | None = Field(None, exclude=True)
    sources: dict[str, str] = Field(default_factory=dict, exclude=True)

    def show(self) -> list[tuple[str, str, str, str]]:
        """(setting, environment variable, value with secrets masked, source) for every setting."""
        rows = []
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            if not isinstance(extra, dict):
                continue
            value = getattr(self, name)
            if value is None:
                shown = "-"
            elif extra["secret"]:
                shown = MASK
            elif name == "metadb":
                shown = mask_url_password(str(value))
            else:
                shown = str(value)
            rows.append((name, str(extra["env"]), shown, self.sources.get(name, "default")))
        return rows


class SettingsError(ValueError):
    """A setting with a wrong value or an unreadable config file; the message names the variable or key."""


def _env_names() -> dict[str, str]:
    names = {}
    for name, info in Settings.model_fields.items():
        if isinstance(info.json_schema_extra, dict):
            names[name] = str(info.json_schema_extra["env"])
    return names


def _is_path(name: str) -> bool:
    extra = Settings.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra["path"])


def load_settings(environ: Mapping[str, str] | None = None, config_file: str | None = None) -> Settings:
    """The effective settings: defaults, then the config file, then the environment (`environ`, else the
    process's, which also lets `ob-takeover.toml` in the current directory be found)."""
    env = os.environ if environ is None else environ
    names = _env_names()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    origin: dict[str, str] = {}
    path = config_file or env.get(CONFIG_ENV)
    if path is None and environ is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path:
        for key, value in _read_config_file(Path(path)).items():
            if key not in names:
                raise SettingsError(f"{path}: unknown setting {key!r}; known: {', '.join(sorted(names))}")
            if _is_path(key) and isinstance(value, str):
                value = _relative_to(Path(path).parent, value)
            values[key], sources[key], origin[key] = value, f"file {path}", f"{key} in {path}"
    for name, variable in names.items():
        if env.get(variable) not in (None, ""):
            values[name], sources[name], origin[name] = env[variable], f"env {variable}", variable
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
            field = str(error["loc"][0]) if error["loc"] else "settings"
            problems.append(f"{origin.get(field, field)}: {error['msg']}")
        raise SettingsError("; ".join(problems)) from None
    return settings.model_copy(update={"config_file": str(path) if path else None, "sources": sources})


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"config file {path} cannot be read: {exc}") from None


def _relative_to(base: Path, value: str) -> str:
    """A path (or a `sqlite:///` URL) from a config file, made relative to the file's directory."""
    prefix = "sqlite:///" if value.startswith("sqlite:///") else ""
    raw = value[len(prefix) :]
    if ("://" in value and not prefix) or raw.startswith(("/", "~")) or raw == ":memory:":
        return value
    return prefix + str(base / raw)


def mask_url_password(url: str, mask: str = MASK) -> str:
    """A URL as it may be shown: its password replaced by `mask`. The password runs to the URL's last `@`,
    so that one with an `@` left unencoded is masked whole (anything up to that `@` is masked, never less)."""
    scheme, separator, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not separator or not at or not colon:
        return url
    return f"{scheme}://{user}:{mask}@{host}"


def settings_table_markdown() -> str:
    """The table of settings in docs/configuration.md, generated from `Settings` (a test keeps them equal)."""
    rows = ["| setting (file key) | variable | default | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        extra = info.json_schema_extra
        if not isinstance(extra, dict):
            continue
        default = "-" if info.default is None else f"`{info.default}`"
        secret = " (secret: masked in `config show`)" if extra["secret"] else ""
        rows.append(f"| `{name}` | `{extra['env']}` | {default} | {info.description}{secret} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table_markdown())
