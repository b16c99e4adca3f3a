"""Commands the takeover runs on hosts, built by pure functions, and the parsers of their output.

Facts (read-only) are kept apart from changes. Changes are idempotent shell scripts; secrets travel
on stdin, never on the command line.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shlex
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AGENT_DIR = "$HOME/ocp_agent"
AGENT_CONF = f"{AGENT_DIR}/conf"
AGENT_CONFIG_FILE = "ob_cluster.json"
AGENT_MODULES_FILE = "modules.json"
AGENT_PID_FILE = f"{AGENT_DIR}/run/ocp_agent.pid"
MONITOR_MODULES = ("ob_metrics", "host_metrics", "ob_logs", "sql_audit")

# A line between the outputs of a command that does several things in one round trip.
SECTION = "--- ob-takeover section ---"


def sections(output: str, count: int) -> list[str]:
    """The `count` outputs of a command whose parts are separated by `SECTION` lines."""
    parts = output.split(f"{SECTION}\n")
    if len(parts) != count:
        raise ValueError(f"expected {count} sections of output, got {len(parts)}: {output[:200]!r}")
    return parts


# --- facts -------------------------------------------------------------------------------------

# Every fact must be read: a failing command ends the script with its error instead of an empty value.
HOST_FACTS = (
    "hostname=$(hostname) && kernel=$(uname -r) && arch=$(uname -m) && cpus=$(nproc) && "
    "memory_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo) && "
    'disk=$(df -Pk -- "$HOME") && disk_free_kb=$(echo "$disk" | awk \'NR==2 {print $4}\') && '
    'os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || uname -s) && epoch=$(date +%s.%N) && '
    'printf "%s\\n" "hostname=$hostname" "os=$os" "kernel=$kernel" "arch=$arch" "cpus=$cpus" '
    '"memory_kb=$memory_kb" "disk_free_kb=$disk_free_kb" "epoch=$epoch"'
)


def listening_process(port: int) -> str:
    """Who listens on a TCP port: `ss` lines with the owning process."""
    return f"ss -Hltnp 'sport = :{int(port)}'"


def process_details(pid: int) -> str:
    """OS user, start time, command line (NUL-separated) and working directory of a process; the
    first step that fails ends it with that step's error."""
    return _process_details(str(int(pid)))


def _process_details(p: str) -> str:
    """`process_details` of the pid `p` names: a number, or a shell variable that holds one."""
    return (
        f"ps -o user= -p {p} && ps -o lstart= -p {p} && "
        f"tr '\\0' '\\n' < /proc/{p}/cmdline | base64 -w0 && echo && readlink /proc/{p}/cwd"
    )


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    os: str
    kernel: str
    arch: str
    cpus: int
    memory_kb: int
    disk_free_kb: int
    epoch: float

    def as_dict(self, clock_offset: float) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "os": self.os,
            "kernel": self.kernel,
            "arch": self.arch,
            "cpus": self.cpus,
            "memory_kb": self.memory_kb,
            "disk_free_kb": self.disk_free_kb,
            "clock_offset_s": round(clock_offset, 3),
        }


def parse_host_facts(output: str) -> HostFacts:
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    try:
        return HostFacts(
            hostname=values["hostname"],
            os=values["os"],
            kernel=values["kernel"],
            arch=values["arch"],
            cpus=int(values["cpus"]),
            memory_kb=int(values["memory_kb"] or 0),
            disk_free_kb=int(values["disk_free_kb"] or 0),
            epoch=float(values["epoch"]),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unexpected facts output ({exc}): {output[:200]!r}") from None


_SS_LINE = re.compile(r"^LISTEN\s+\d+\s+\d+\s+(\S+):(\d+)\s+\S+\s+users:\(\((.*)\)\)\s*$")
_SS_PROCESS = re.compile(r'"([^"]+)",pid=(\d+),fd=\d+')


def parse_listener(output: str, ip: str, port: int) -> tuple[str, int] | None:
    """The (process name, pid) listening on ip:port, or on every address, from `ss -Hltnp` output."""
    for line in output.splitlines():
        match = _SS_LINE.match(line.strip())
        if not match or int(match.group(2)) != port:
            continue
        address = match.group(1).strip("[]")
        if address not in (ip, "0.0.0.0", "*", "::"):
            continue
        process = _SS_PROCESS.search(match.group(3))
        if process:
            return process.group(1), int(process.group(2))
    return None


def parse_process_details(output: str, pid: int, name: str) -> dict[str, Any]:
    lines = output.splitlines()
    if len(lines) < 4:
        raise ValueError(f"unexpected process details for pid {pid}: {output[:200]!r}")
    user, started, encoded, cwd = lines[0].strip(), lines[1].strip(), lines[2].strip(), lines[3].strip()
    argv = [arg for arg in base64.b64decode(encoded).decode(errors="replace").split("\n") if arg]
    options = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i].startswith("-")}
    install_path = cwd
    return {
        "pid": pid,
        "name": name,
        "os_user": user,
        "start_time": started,
        "command_line": " ".join(shlex.quote(a) for a in argv),
        "install_path": install_path,
        "data_dir": options.get("-d") or options.get("--data_dir") or f"{install_path}/store",
        "log_dir": f"{install_path}/log",
    }


def disk_free(*paths: str) -> str:
    """Free kilobytes of the file systems holding `paths`, one line each."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    return f"out=$(df -Pk -- {quoted}) && echo \"$out\" | awk 'NR > 1 {{print $4}}'"


def process_details_with_disk(pid: int) -> str:
    """`process_details`, then (after a `SECTION` line) the data directory as the observer's command line
    names it (`-d`/`--data_dir`, else `<cwd>/store`) and the free kilobytes of it and of `<cwd>/log`: what
    `parse_process_details` and `disk_free` tell in two round trips, in one."""
    return _process_details_with_disk(str(int(pid)))


def _process_details_with_disk(p: str) -> str:
    data_dir = (
        f"tr '\\0' '\\n' < /proc/{p}/cmdline | "
        'awk \'NR > 2 && p == "-d" {d = $0} NR > 2 && p == "--data_dir" {e = $0} {p = $0} '
        'END {print (d != "" ? d : e)}\''
    )
    return (
        f"{_process_details(p)} && echo '{SECTION}' && c=$(readlink /proc/{p}/cwd) && d=$({data_dir}) && "
        'd=${d:-$c/store} && printf \'%s\\n\' "$d" && out=$(df -Pk -- "$d" "$c/log") && '
        "echo \"$out\" | awk 'NR > 1 {print $4}'"
    )


def observer_on_port(ip: str, port: int, *, with_disk: bool = False) -> str:
    """`listening_process`, then (after a `SECTION` line) the pid of the first listener on `ip` (or on every
    address) and port, and (after another) that process's `process_details`, or `process_details_with_disk`:
    one round trip. No such listener: the listeners and one `SECTION` line."""
    p = int(port)
    locals_ = " || ".join(
        f'$4 == "{address}:{p}"' for address in (ip, f"[{ip}]", "0.0.0.0", "*", "[::]") if '"' not in address
    )
    details = _process_details_with_disk("$pid") if with_disk else _process_details("$pid")
    return (
        f"out=$({listening_process(p)}) && printf '%s\\n' \"$out\" && echo '{SECTION}' && "
        f"pid=$(printf '%s\\n' \"$out\" | awk {shlex.quote(locals_)} | grep -o 'pid=[0-9][0-9]*' | head -n 1 | "
        "cut -c5-) && "
        f'if [ -n "$pid" ]; then echo "$pid" && echo \'{SECTION}\' && {{ {details}; }}; fi'
    )


def parse_disk_free(output: str, count: int) -> list[int]:
    values = output.split()
    if len(values) != count or not all(v.isdigit() for v in values):
        raise ValueError(f"unexpected df output: {output[:200]!r}")
    return [int(v) for v in values]


# --- changes: the agent's configuration ------------------------------------------------------------


def agent_key(task_id: int) -> str:
    """The host's agent key (base64), created with a marker naming the task when missing."""
    return (
        f'd="{AGENT_CONF}"; mkdir -p "$d" && chmod 700 "$d"; k="$d/agent.key"; '
        f'[ -s "$k" ] || (umask 077; head -c 32 /dev/urandom | base64 > "$k"; : > "$k.created-{int(task_id)}"); '
        'cat "$k"'
    )


def remove_agent_key(task_id: int) -> str:
    """Undo `agent_key`: remove the key if this task created it, and the agent dirs if left empty."""
    return (
        f'd="{AGENT_CONF}"; k="$d/agent.key"; if [ -e "$k.created-{int(task_id)}" ]; then '
        f'rm -f "$k" "$k.created-{int(task_id)}"; rmdir "$d" "{AGENT_DIR}" 2>/dev/null || true; fi'
    )


def encrypt_for_agent(agent_key_b64: str, secret: str) -> str:
    """A secret as the agent stores it: AES-GCM under the host's agent key."""
    key = base64.b64decode(agent_key_b64.strip())
    nonce = secrets.token_bytes(12)
    return "aesgcm:" + base64.b64encode(nonce + AESGCM(key).encrypt(nonce, secret.encode(), b"ocp_agent")).decode()


def decrypt_for_agent(agent_key_b64: str, token: str) -> str:
    raw = base64.b64decode(token.removeprefix("aesgcm:"))
    return AESGCM(base64.b64decode(agent_key_b64.strip())).decrypt(raw[:12], raw[12:], b"ocp_agent").decode()


def write_agent_file(name: str, task_id: int, size: int) -> str:
    """Write stdin (`size` bytes) to the agent's conf/<name> atomically, keeping the version before this
    task once. A short or failed write (the connection dropped mid-way, a full disk) leaves the file as
    it was and no temporary file behind."""
    target = f'"{AGENT_CONF}/{name}"'
    backup = f'"{AGENT_CONF}/{name}.before-{int(task_id)}"'
    none = f'"{AGENT_CONF}/{name}.before-{int(task_id)}.none"'
    return (
        f'set -e; mkdir -p "{AGENT_CONF}"; chmod 700 "{AGENT_CONF}"; '
        f"if [ ! -e {backup} ] && [ ! -e {none} ]; then "
        f"if [ -e {target} ]; then cp -p {target} {backup}; else : > {none}; fi; fi; "
        f'umask 077; tmp="{AGENT_CONF}/.{name}.$$"; trap \'rm -f "$tmp"\' EXIT; cat > "$tmp"; '
        f'if [ "$(wc -c < "$tmp")" -ne {int(size)} ]; then echo "short write" >&2; exit 3; fi; '
        f'mv -f "$tmp" {target}'
    )


def restore_agent_file(name: str, task_id: int) -> str:
    """Put back the version from before this task (or remove the file if there was none), and drop
    what a write killed mid-way left."""
    target = f'"{AGENT_CONF}/{name}"'
    backup = f'"{AGENT_CONF}/{name}.before-{int(task_id)}"'
    none = f'"{AGENT_CONF}/{name}.before-{int(task_id)}.none"'
    return (
        f'rm -f "{AGENT_CONF}"/.{name}.*; '
        f"if [ -e {backup} ]; then mv -f {backup} {target}; echo restored; "
        f"elif [ -e {none} ]; then rm -f {target} {none}; echo removed; else echo unchanged; fi"
    )


def read_agent_file(name: str) -> str:
    return f'cat "{AGENT_CONF}/{name}" 2>/dev/null || true'


def read_agent_files(*names: str) -> str:
    """`read_agent_file` of each of `names`, separated by `SECTION` lines: one round trip."""
    return f" && echo '{SECTION}' && ".join(f"{{ {read_agent_file(name)}; }}" for name in names)


def agent_key_and_file(task_id: int, name: str) -> str:
    """`agent_key`, then (after a `SECTION` line) the agent file `name`, in one round trip."""
    return f"{agent_key(task_id)} && echo '{SECTION}' && {{ {read_agent_file(name)}; }}"


def write_agent_file_and_reload(name: str, task_id: int, size: int) -> str:
    """`write_agent_file`, then, once written, `RELOAD_AGENT` (its message is the output)."""
    return f"( {write_agent_file(name, task_id, size)} ) && {{ {RELOAD_AGENT}; }}"


def write_reload_and_read(name: str, task_id: int, size: int) -> str:
    """`write_agent_file_and_reload`, then (after a `SECTION` line) the file as the agent now reads it."""
    return f"{write_agent_file_and_reload(name, task_id, size)} && echo '{SECTION}' && {{ {read_agent_file(name)}; }}"


# The pid file is only trusted for a positive number whose process is the agent (`/proc/PID/comm` is
# ocp_agent, ocp_agentd, ocp_mgragent, ...): "-1" or a recycled pid must not get a signal.
RELOAD_AGENT = (
    f'p="{AGENT_PID_FILE}"; pid=$(head -c 32 "$p" 2>/dev/null | tr -d " \\n"); case "$pid" in '
    '""|*[!0-9]*|0*) echo "no agent process running (no pid in $p)";; '
    '*) comm=$(cat "/proc/$pid/comm" 2>/dev/null); case "$comm" in '
    'ocp_*agent*) kill -HUP "$pid" && echo "agent $pid reloaded";; '
    '*) echo "no agent process running (pid $pid in $p is ${comm:-not running})";; esac;; esac'
)


def agent_config(
    *,
    cluster_name: str,
    ob_cluster_id: int,
    monitor_user: str,
    monitor_password_encrypted: str,
    servers: list[dict[str, Any]],
    config_url: str,
) -> str:
    """The agent's cluster configuration document (JSON, stable key order)."""
    document = {
        "cluster": {"name": cluster_name, "id": ob_cluster_id, "config_url": config_url},
        "monitor": {"user": monitor_user, "password": monitor_password_encrypted},
        "observers": servers,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def agent_modules(enabled: bool) -> str:
    return json.dumps({module: enabled for module in MONITOR_MODULES}, indent=2, sort_keys=True) + "\n"


def parse_agent_modules(text: str) -> dict[str, bool]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return {str(k): bool(v) for k, v in data.items()} if isinstance(data, dict) else {}
