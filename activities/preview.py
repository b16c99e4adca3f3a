"""The plan preview: what a takeover would send, subtask by subtask, from a run of the real subtask code.

Each subtask's implementation runs as it would in the takeover, but against recording ports: a cluster
port that answers reads from the facts the precheck has just read (the topology, the servers' rows, the
config URL) and keeps every statement, and a host port that answers the fact commands with plausible
output and keeps every command. The metadb is a scratch copy without secrets (`metadb.scratch`).
Nothing reaches the cluster, the hosts or the real metadb. Passwords are masked in what is kept;
values only known at run time are shown as placeholders (`<pid>`, `<task-id>`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import inspect
import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from types import TracebackType
from typing import Any, TypeVar, cast

from activities import cluster_sql as sql
from activities import host_commands as commands
from activities.facts import ClusterFacts, Fact, FactKind, read_topology
from activities.host_commands import HostFacts
from activities.ports import CommandResult
from activities.precheck import HostReading
from activities.runtime import Runtime, Work
from activities.subtasks import IMPLEMENTATIONS
from contracts.errors import FailedPrecondition, TakeoverError
from contracts.messages import PlannedStep, PrecheckInput, SubtaskInput
from contracts.stages import SUBTASKS, FanOut, stage_nodes
from contracts.target import ClusterTarget, TakeoverOptions
from contracts.topology import ClusterEndpoint, HostNode, ServerNode, ZoneNode
from metadb.db import Database
from metadb.migrate import migrate
from metadb.scratch import PLACEHOLDER_SECRET, copy_for_preview
from metadb.vault import MasterKey, Vault

# Values only known at run time; recorded text shows them as the placeholders next to them.
PREVIEW_TASK_ID = 987_654_321_012
PREVIEW_PID = 4_194_305  # above Linux's largest pid, so it never stands for a real one
PLACEHOLDERS = {str(PREVIEW_TASK_ID): "<task-id>", str(PREVIEW_PID): "<pid>"}
_AGENT_KEY = base64.b64encode(bytes(32)).decode()
_NO_AGENT = "no agent process running\n"
T = TypeVar("T")


def _host_facts(address: str, facts: HostFacts | None) -> str:
    """The facts script's output: the host's facts as the precheck read them, with the clock of now."""
    known = facts or HostFacts(address, "Linux", "unknown", "x86_64", 1, 0, 0, 0.0)
    fields = {**dataclasses.asdict(known), "epoch": f"{time.time():.6f}"}
    return "".join(f"{name}={value}\n" for name, value in fields.items())


def _default_process(server: ServerNode) -> dict[str, Any]:
    """An observer as OCP installs it, for a server whose process the precheck could not read."""
    home = "/home/admin/oceanbase"
    return {
        "os_user": "admin",
        "start_time": "unknown",
        "command_line": f"{home}/bin/observer -p {server.sql_port} -d {home}/store",
        "install_path": home,
        "data_dir": f"{home}/store",
        "log_dir": f"{home}/log",
    }


class Recording:
    """The steps recorded so far; statements and commands go to the step that is running."""

    def __init__(self) -> None:
        self.steps: list[PlannedStep] = []

    def begin(self, subtask: str, node: str | None) -> PlannedStep:
        step = PlannedStep(subtask=subtask, node=node)
        self.steps.append(step)
        return step

    def statement(self, text: str) -> None:
        _add_once(self.steps[-1].statements, _placeholders(sql.mask(text)))

    def command(self, text: str, stdin: str | None) -> None:
        _add_once(self.steps[-1].commands, _placeholders(text) + ("  < stdin" if stdin is not None else ""))


def _add_once(items: list[str], text: str) -> None:
    if text not in items:
        items.append(text)


def _placeholders(text: str) -> str:
    for value, placeholder in PLACEHOLDERS.items():
        text = text.replace(value, placeholder)
    return text


class ClusterModel:
    """The cluster as the precheck read it, answering every fact a takeover asks (`activities.facts`) by what
    it asks and about what; statements that change the cluster are only recorded. A server's io calibration
    is found not run the first time it is asked for and READY after."""

    def __init__(self, cluster: ClusterFacts, data_dir: str) -> None:
        topology = cluster.topology
        self._cluster = cluster
        self._zones = [
            {"ZONE": z.name, "STATUS": "ACTIVE", "REGION": z.region, "IDC": z.idc, "TYPE": "ReadWrite"}
            for z in topology.zones
        ]
        self._parameters = {
            "cluster": topology.cluster_name,
            "cluster_id": str(topology.ob_cluster_id),
            "obconfig_url": cluster.config_url,
            "rootservice_list": ";".join(f"{s.ip}:{s.rpc_port}:{s.sql_port}" for s in topology.servers),
            "data_dir": data_dir,
        }
        self._calibrations_asked: set[tuple[str, ...]] = set()

    def answer(self, fact: Fact[T]) -> T:
        value = self._value(fact)
        if value is _UNKNOWN:
            raise FailedPrecondition(f"the plan preview has no answer for {fact.kind} {' '.join(fact.subject)}")
        return cast(T, value)

    def _value(self, fact: Fact[Any]) -> Any:
        topology = self._cluster.topology
        kind = fact.kind
        if kind is FactKind.VERSION:
            return f"5.7.25-OceanBase_CE-v{topology.version}"
        if kind in (FactKind.OB_VERSION,):
            return topology.version
        if kind is FactKind.IDENTITY:
            return [
                {"NAME": name, "VALUE": self._parameters[name]} for name in ("cluster", "cluster_id", *fact.subject)
            ]
        if kind is FactKind.TENANT_ROLES:
            return [{"TENANT_ROLE": "STANDBY" if topology.standby else "PRIMARY"}]
        if kind in (FactKind.SERVERS, FactKind.TOPOLOGY_SERVERS):
            return self._cluster.servers
        if kind in (FactKind.ZONES, FactKind.TOPOLOGY_ZONES):
            return self._zones
        if kind is FactKind.PARAMETER:
            return self._parameters.get(fact.subject[0], "")
        if kind is FactKind.PARAMETERS:
            return {name: self._parameters.get(name, "") for name in fact.subject}
        if kind is FactKind.ROOT_SERVICE:  # the first server leads
            return fact.parse(
                [
                    {"SVR_IP": s.ip, "SVR_PORT": s.rpc_port, "SQL_PORT": s.sql_port, "ZONE": s.zone, "ROLE": role}
                    for s, role in zip(
                        topology.servers, ["LEADER", *["FOLLOWER"] * len(topology.servers)], strict=False
                    )
                ]
            )
        if kind is FactKind.TENANTS:
            return fact.parse([_SYS_TENANT])
        if kind in (FactKind.SERVER_STATUS, FactKind.ZONE_STATUS):
            return "ACTIVE"
        if kind is FactKind.IO_CALIBRATION:
            asked = fact.subject in self._calibrations_asked
            self._calibrations_asked.add(fact.subject)
            return {"STATUS": "READY"} if asked else {}
        if kind is FactKind.SERVICE_NOT_READY:
            return 0
        if kind is FactKind.LOGIN:
            return True
        if kind is FactKind.ACTIVE_PLAN:
            return ""
        if kind in (FactKind.USER_EXISTS, FactKind.PLAN_EXISTS, FactKind.GROUP_EXISTS):
            return False  # the takeover's own users and resource manager objects: not there yet
        if kind in (FactKind.UNIT_CONFIGS, FactKind.POOLS, FactKind.UNITS, FactKind.GRANTS, FactKind.DIRECTIVES):
            return []
        if kind in (FactKind.MAPPING,):
            return None
        if kind is FactKind.USER_PASSWORD_HASH:
            return ""
        if kind is FactKind.RESOURCE_MANAGER:
            nothing = {"ACTIVE_PLAN": "", "GROUPS_FOUND": 0, "PLANS_FOUND": 0, "DIRECTIVES_FOUND": 0}
            return fact.parse([{**nothing, "MAPPED_GROUP": None}])
        return _UNKNOWN


_UNKNOWN = object()
_SYS_TENANT = {
    "TENANT_ID": 1,
    "TENANT_NAME": "sys",
    "TENANT_TYPE": "SYS",
    "PRIMARY_ZONE": "RANDOM",
    "LOCALITY": "",
    "COMPATIBILITY_MODE": "MYSQL",
    "STATUS": "NORMAL",
    "TENANT_ROLE": "PRIMARY",
}


class RecordingCluster:
    """A `ClusterPort` that answers facts from the `ClusterModel` and records every statement, facts' included."""

    def __init__(self, endpoint: ClusterEndpoint, model: ClusterModel, recording: Recording) -> None:
        self._endpoint = endpoint
        self._model = model
        self._recording = recording

    @property
    def where(self) -> str:
        return self._endpoint.where

    def read(self, fact: Fact[T]) -> T:
        self._recording.statement(fact.statement)
        return self._model.answer(fact)

    def query(self, sql: str, args: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """A statement that is not a fact (one that changes the cluster): recorded, with no rows."""
        self._recording.statement(sql)
        return []

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> None:
        self.query(sql, args)

    def close(self) -> None:
        pass

    def __enter__(self) -> RecordingCluster:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        pass


class RecordingHost:
    """A `HostPort` that answers the takeover's commands with what the precheck read on the host (or
    plausible values where it read nothing) and records every command."""

    def __init__(self, address: str, reading: HostReading | None, recording: Recording) -> None:
        self._address = address
        self._recording = recording
        self._files: dict[str, str] = {}
        facts = reading.measured.facts if reading and reading.measured else None
        self._answers: dict[str, Callable[[], str]] = {
            commands.HOST_FACTS: functools.partial(_host_facts, address, facts),
            commands.agent_key(PREVIEW_TASK_ID): functools.partial(str, _AGENT_KEY),
            commands.RELOAD_AGENT: functools.partial(str, _NO_AGENT),
        }
        for server, process in reading.observers if reading else []:
            details = process.details if process else _default_process(server)
            listener = f"LISTEN 0 4096 {server.ip}:{server.sql_port} 0.0.0.0:* "
            argv = base64.b64encode("\n".join(shlex.split(details["command_line"])).encode()).decode()
            self._answers[commands.disk_free(details["data_dir"], details["log_dir"])] = functools.partial(
                str, "0\n0\n"
            )
            described = f"{details['os_user']}\n{details['start_time']}\n{argv}\n{details['install_path']}\n"
            measured = f"{commands.SECTION}\n{details['data_dir']}\n0\n0\n"
            found = f'{listener}users:(("observer",pid={PREVIEW_PID},fd=3))\n{commands.SECTION}\n{PREVIEW_PID}\n'
            for with_disk, answer in ((False, described), (True, described + measured)):
                self._answers[commands.observer_on_port(server.ip, server.sql_port, with_disk=with_disk)] = (
                    functools.partial(str, f"{found}{commands.SECTION}\n{answer}")
                )
        for name in (commands.AGENT_CONFIG_FILE, commands.AGENT_MODULES_FILE):
            self._answers[commands.read_agent_file(name)] = functools.partial(self._file, name)
            self._answers[commands.agent_key_and_file(PREVIEW_TASK_ID, name)] = functools.partial(
                lambda name: f"{_AGENT_KEY}\n{commands.SECTION}\n{self._file(name)}", name
            )

    def _file(self, name: str) -> str:
        return self._files.get(name, "")

    def _write(self, command: str, input: str) -> str | None:
        """The output of a command that writes an agent file (the file is kept for later reads), or None."""
        size = len(input.encode())
        for name in (commands.AGENT_CONFIG_FILE, commands.AGENT_MODULES_FILE):
            written = {
                commands.write_agent_file(name, PREVIEW_TASK_ID, size): "",
                commands.write_agent_file_and_reload(name, PREVIEW_TASK_ID, size): _NO_AGENT,
                commands.write_reload_and_read(name, PREVIEW_TASK_ID, size): f"{_NO_AGENT}{commands.SECTION}\n{input}",
            }
            if command in written:
                self._files[name] = input
                return written[command]
        return None

    @property
    def address(self) -> str:
        return self._address

    async def run(
        self, command: str, *, input: str | None = None, check: bool = True, what: str | None = None
    ) -> CommandResult:
        self._recording.command(command, input)
        if command in self._answers:
            return CommandResult(0, self._answers[command](), "")
        output = None if input is None else self._write(command, input)
        if output is not None:
            return CommandResult(0, output, "")
        raise FailedPrecondition(f"the plan preview has no answer for `{what or command}`", node=self._address)

    async def __aenter__(self) -> RecordingHost:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


async def preview_takeover(
    runtime: Runtime, request: PrecheckInput, cluster: ClusterFacts, readings: list[HostReading]
) -> list[PlannedStep]:
    """The takeover of the cluster the precheck read (`cluster`, and `readings` of its hosts), as it would
    run now: one step per subtask and node (Wait nodes left out), after the topology discovery. A subtask
    that would fail ends the preview with the reason in its note."""
    topology = cluster.topology
    recording = Recording()
    by_ip = {reading.ip: reading for reading in readings}
    processes = [process for reading in readings for _, process in reading.observers if process is not None]
    model = ClusterModel(cluster, processes[0].details["data_dir"] if processes else "/home/admin/oceanbase/store")
    recording.begin("Discover topology", None).note = "at task creation"
    read_topology(RecordingCluster(request.target.endpoint, model, recording))
    with TemporaryDirectory(prefix="ob-takeover-preview-") as scratch:
        db = Database(f"sqlite:///{Path(scratch) / 'metadb.sqlite'}")
        try:
            vault = Vault(MasterKey.generate())
            await asyncio.to_thread(
                _prepare_scratch, runtime.db, db, vault, request.options, [h.ip for h in topology.hosts]
            )
            preview = dataclasses.replace(
                runtime,
                db=db,
                vault=vault,
                poll_interval=0,
                cluster_connector=lambda endpoint, user: RecordingCluster(endpoint, model, recording),
                host_connector=lambda login: RecordingHost(login.address, by_ip.get(login.address), recording),
            )
            target = _without_secrets(request.target).discovered(topology)
            await _run_subtasks(preview, target, request.options, cluster, recording)
        finally:
            db.close()
    return recording.steps


def _prepare_scratch(
    source: Database, target: Database, vault: Vault, options: TakeoverOptions, ips: list[str]
) -> None:
    migrate(target)
    vault.verify(target)
    info = options.host_info
    copy_for_preview(source, target, vault, host_ips=ips, credential_ids=[info.credential_id] if info else [])


def _without_secrets(target: ClusterTarget) -> ClusterTarget:
    """The target with placeholders for its passwords: the preview never holds a real one."""
    proxyro = target.proxyro_password is not None or target.proxyro_credential_id is not None
    endpoint = target.endpoint.model_copy(update={"root_sys_password": PLACEHOLDER_SECRET, "credential_id": None})
    return target.model_copy(
        update={
            "endpoint": endpoint,
            "proxyro_password": PLACEHOLDER_SECRET if proxyro else None,
            "proxyro_credential_id": None,
        }
    )


async def _run_subtasks(
    runtime: Runtime, target: ClusterTarget, options: TakeoverOptions, cluster: ClusterFacts, recording: Recording
) -> None:
    topology = cluster.topology
    context: dict[str, str] = {}
    for number, stage in enumerate(SUBTASKS, start=1):
        for node in stage_nodes(stage, topology):
            arg = SubtaskInput(
                task_id=PREVIEW_TASK_ID,
                subtask_id=number,
                subtask_name=stage.name,
                workflow_id="preview",
                operation="EXECUTE",
                target=target,
                options=options,
                topology=topology if stage.fan_out is FanOut.CLUSTER else None,
                node_kind=stage.fan_out.value,
                server=node if isinstance(node, ServerNode) else None,
                host=node if isinstance(node, HostNode) else None,
                zone=node if isinstance(node, ZoneNode) else None,
                context=dict(context),
            )
            step = recording.begin(stage.name, _label(node))
            work = Work(arg=arg, runtime=runtime)
            try:
                implementation = IMPLEMENTATIONS[stage.activity]
                if inspect.iscoroutinefunction(implementation):
                    await implementation(work)
                else:
                    await asyncio.to_thread(implementation, work)
            except TakeoverError as exc:
                step.note = f"the takeover would stop here: {_placeholders(str(exc))}"
                return
            finally:
                work.close()
            if not step.statements and not step.commands:
                step.note = "metadb only"
            context.update(work.context)


def _label(node: ServerNode | HostNode | ZoneNode | None) -> str | None:
    if isinstance(node, ServerNode):
        return node.label
    if isinstance(node, HostNode):
        return node.ip
    if isinstance(node, ZoneNode):
        return node.name
    return None
