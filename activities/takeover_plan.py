"""The plan preview: every subtask a takeover would run, where, with the statements and host commands
it would send (secrets masked), built from the same builders the activities use.

A test runs a takeover and checks that every statement the cluster received was in the preview, so
the preview cannot silently drift from what runs. Reads are listed too: a DBA sees everything.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from activities import cluster_sql as sql
from activities import host_commands as commands
from activities import topology as discovery
from contracts.request import TakeOverRequest
from contracts.topology import Topology
from workflows.plan import build_plan

MASKED = "***"
PROXYRO_CHECK = "SELECT 1 AS OK"


class PlannedStep(BaseModel):
    # Built up field by field, so not frozen like the other payloads; camelCase on the wire all the same.
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    subtask: str
    node: str | None = None
    statements: list[str] = Field(default_factory=list)
    commands: list[str] = Field(default_factory=list)
    note: str = ""


def _config_url(public_url: str, topology: Topology) -> str:
    return (
        f"{public_url}/services?Action=ObRootServiceInfo"
        f"&ObCluster={topology.cluster_name}&ObClusterId={topology.ob_cluster_id}"
    )


def _discovery() -> list[str]:
    return [
        discovery.VERSION_SQL,
        discovery.PARAMETERS_SQL,
        discovery.SERVERS_SQL,
        discovery.ZONES_SQL,
        discovery.TENANT_ROLES_SQL,
    ]


def _statements(name: str, request: TakeOverRequest, topology: Topology, public_url: str, node: object) -> PlannedStep:
    """What one subtask sends; `node` is its server, host or zone (or None)."""
    server = next((s for s in topology.servers if s.label == node), None)
    step = PlannedStep(subtask=name, node=str(node) if node else None)
    if name == "Prepare take over cluster":
        step.statements = [*_discovery(), sql.parameter("obconfig_url"), sql.SERVERS_SQL]
        if request.proxyro_password:
            step.statements += [PROXYRO_CHECK, sql.user_exists(sql.PROXYRO_USER)]
        step.commands = [
            commands.HOST_FACTS,
            *(commands.listening_process(port) for port in sorted({s.sql_port for s in topology.servers})),
            commands.process_details(0),
        ]
        step.note = "the precheck; stops on a FAILED item"
    elif name == "Reserve host":
        step.commands = [commands.HOST_FACTS]
        step.note = "per host: register from hostInfo when unknown, record facts, reserve"
    elif name == "Create default user":
        step.statements = [
            sql.user_exists(sql.MONITOR_USER),
            sql.create_user(sql.MONITOR_USER, MASKED),
            sql.alter_user_password(sql.MONITOR_USER, MASKED),
            sql.grant("SELECT", "*.*", sql.MONITOR_USER),
        ]
    elif name == "Register config url":
        if request.switch_config_url:
            step.statements = [
                sql.parameter("obconfig_url"),
                sql.parameter("rootservice_list"),
                sql.set_parameter("obconfig_url", _config_url(public_url, topology)),
                sql.RELOAD_SERVER,
            ]
        else:
            step.note = "switchConfigUrl is false: nothing is sent"
    elif name == "Run io calibration" and server is not None:
        status = sql.io_calibration_status(server.ip, server.rpc_port)
        step.statements = [status, sql.run_io_calibration(server.ip, server.rpc_port)]
        step.note = "the job is not started again while IN PROGRESS; the status is polled until READY"
    elif name == "Record root service list":
        step.statements = [sql.RS_LIST_SQL, sql.parameter("rootservice_list")]
        step.note = "rootservice_list only when the log stream view is empty"
    elif name == "Wait cluster accessible":
        step.statements = [sql.SERVICE_NOT_READY_SQL]
        step.note = f"as {sql.MONITOR_USER}, polled until every server is ACTIVE"
    elif name == "Update server process info" and server is not None:
        step.commands = [
            commands.listening_process(server.sql_port),
            commands.process_details(0),
            commands.disk_free("DATA_DIR", "LOG_DIR"),
        ]
        step.note = "0 stands for the pid found by ss; DATA_DIR and LOG_DIR for the directories it uses"
    elif name == "Attach cluster attributes":
        step.statements = [
            sql.SERVERS_SQL,
            sql.ZONES_SQL,
            "SELECT ob_version() AS VERSION",
            sql.parameter("data_dir"),
            sql.parameter("obconfig_url"),
        ]
    elif name == "Refresh ocp agent config":
        step.commands = [
            commands.agent_key(0),
            commands.read_agent_file(commands.AGENT_CONFIG_FILE),
            f"{commands.write_agent_file(commands.AGENT_CONFIG_FILE, 0, 0)}  < the configuration (password encrypted)",
            commands.RELOAD_AGENT,
        ]
        step.note = "0 stands for the task id and the file's size"
    elif name == "Active agent modules":
        step.commands = [
            f"{commands.write_agent_file(commands.AGENT_MODULES_FILE, 0, 0)}  < {commands.agent_modules(True).strip()}",
            commands.RELOAD_AGENT,
            commands.read_agent_file(commands.AGENT_MODULES_FILE),
        ]
    elif name == "Sync cluster info":
        step.statements = [sql.ZONES_SQL, sql.SERVERS_SQL]
    elif name == "Sync all tenant information":
        step.statements = [sql.TENANTS_SQL, sql.UNIT_CONFIGS_SQL, sql.POOLS_SQL, sql.UNITS_SQL]
    elif name == "Set proxyro password to sys tenant":
        step.statements = [
            sql.user_exists(sql.PROXYRO_USER),
            sql.create_user(sql.PROXYRO_USER, MASKED),
            sql.alter_user_password(sql.PROXYRO_USER, MASKED),
            sql.grant("SELECT", "oceanbase.*", sql.PROXYRO_USER),
            PROXYRO_CHECK,
        ]
        step.note = "cannot be rolled back: the old proxyro password is unknown"
    elif name == "Update observer status" and server is not None:
        step.statements = [sql.server_status(server.ip, server.rpc_port)]
    elif name == "Update zone status" and node is not None:
        step.statements = [sql.zone_status(str(node))]
    elif name == "Create resource manager for default user":
        group, plan = sql.quote(sql.CONSUMER_GROUP), sql.RESOURCE_PLAN
        step.statements = [
            sql.ACTIVE_PLAN_SQL,
            sql.GROUP_EXISTS_SQL.format(group=group),
            sql.create_consumer_group(sql.CONSUMER_GROUP),
            sql.PLAN_EXISTS_SQL.format(plan=sql.quote(plan)),
            sql.create_plan(plan),
            sql.DIRECTIVES_SQL.format(group=group),
            sql.create_plan_directive(plan, sql.CONSUMER_GROUP, sql.MONITOR_UTILIZATION_LIMIT),
            sql.MAPPING_SQL.format(user=sql.quote(sql.MONITOR_USER)),
            sql.map_user_to_group(sql.MONITOR_USER, sql.CONSUMER_GROUP),
            sql.enable_plan(plan),
        ]
        step.note = "objects that exist are kept; a plan the DBA already enabled gets the directive instead"
    elif name in ("Mc lock ob clusters", "Mc unlock ob clusters", "Update OB cluster status"):
        step.note = "metadb only"
    step.statements = [sql.mask(s) for s in step.statements]
    return step


def takeover_plan(request: TakeOverRequest, topology: Topology, public_url: str) -> list[PlannedStep]:
    """The preview of a takeover of `topology`: one step per subtask (Wait nodes left out)."""
    steps = [PlannedStep(subtask="Discover topology", statements=_discovery(), note="at task creation")]
    for planned in build_plan(topology):
        if planned.stage is None:
            continue
        steps.append(_statements(planned.name, request, topology, public_url, planned.node))
    return steps
