"""Every subtask's implementation, by the activity name the subtask table gives it."""

from __future__ import annotations

from activities import adopt_work, cluster_users, cluster_work, host_work, release_work
from activities.runtime import Implementation

IMPLEMENTATIONS: dict[str, Implementation] = {
    "acquire_cluster_lock": cluster_work.acquire_cluster_lock,
    "release_cluster_lock": cluster_work.release_cluster_lock,
    "prepare_takeover": cluster_work.prepare_takeover,
    "remove_cluster_record": cluster_work.remove_cluster_record,
    "reserve_hosts": host_work.reserve_hosts,
    "unreserve_hosts": host_work.unreserve_hosts,
    "create_default_user": cluster_users.create_default_user,
    "drop_default_user": cluster_users.drop_default_user,
    "register_config_url": cluster_work.register_config_url,
    "restore_config_url": cluster_work.restore_config_url,
    "run_io_calibration": cluster_work.run_io_calibration,
    "record_root_service_list": cluster_work.record_root_service_list,
    "remove_root_service_list": cluster_work.remove_root_service_list,
    "wait_cluster_accessible": cluster_work.wait_cluster_accessible,
    "update_server_process_info": host_work.update_server_process_info,
    "remove_server_process_info": host_work.remove_server_process_info,
    "attach_cluster_attributes": cluster_work.attach_cluster_attributes,
    "detach_cluster_attributes": cluster_work.detach_cluster_attributes,
    "refresh_agent_config": host_work.refresh_agent_config,
    "restore_agent_config": host_work.restore_agent_config,
    "activate_agent_modules": host_work.activate_agent_modules,
    "deactivate_agent_modules": host_work.deactivate_agent_modules,
    "sync_cluster_info": cluster_work.sync_cluster_info,
    "remove_cluster_info": cluster_work.remove_cluster_info,
    "sync_tenant_info": cluster_work.sync_tenant_info,
    "remove_tenant_info": cluster_work.remove_tenant_info,
    "set_proxyro_password": cluster_users.set_proxyro_password,
    "update_observer_status": cluster_work.update_observer_status,
    "update_zone_status": cluster_work.update_zone_status,
    "update_cluster_status": cluster_work.update_cluster_status,
    "create_resource_manager": cluster_users.create_resource_manager,
    "drop_resource_manager": cluster_users.drop_resource_manager,
    "prepare_release": release_work.prepare_release,
    "resume_management": release_work.resume_management,
    "remove_cluster_credentials": release_work.remove_cluster_credentials,
    "precheck_new_servers": adopt_work.precheck_new_servers,
    "reserve_new_hosts": adopt_work.reserve_new_hosts,
}
