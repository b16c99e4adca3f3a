-- Managed clusters and everything a takeover records about them.
-- {{pk}}, {{json}} and {{options}} are filled in per dialect by metadb/migrate.py.

CREATE TABLE clusters (
    id {{pk}},
    name VARCHAR(128) NOT NULL,
    ob_cluster_id BIGINT NOT NULL,
    address VARCHAR(255) NOT NULL,
    port INTEGER NOT NULL,
    connection_mode VARCHAR(16) NOT NULL,
    version VARCHAR(64) NOT NULL,
    status VARCHAR(32) NOT NULL,
    rs_list {{json}},
    config_url VARCHAR(1024),
    previous_config_url VARCHAR(1024),
    attributes {{json}},
    task_id BIGINT,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    UNIQUE (name, ob_cluster_id)
) {{options}};

CREATE TABLE zones (
    cluster_id BIGINT NOT NULL,
    name VARCHAR(128) NOT NULL,
    region VARCHAR(128) NOT NULL,
    idc VARCHAR(128) NOT NULL,
    status VARCHAR(32) NOT NULL,
    PRIMARY KEY (cluster_id, name)
) {{options}};

CREATE TABLE servers (
    cluster_id BIGINT NOT NULL,
    ip VARCHAR(64) NOT NULL,
    rpc_port INTEGER NOT NULL,
    sql_port INTEGER NOT NULL,
    zone VARCHAR(128) NOT NULL,
    status VARCHAR(32) NOT NULL,
    with_rootserver VARCHAR(8) NOT NULL,
    build_version VARCHAR(255) NOT NULL,
    process_info {{json}},
    PRIMARY KEY (cluster_id, ip, rpc_port)
) {{options}};

CREATE TABLE tenants (
    cluster_id BIGINT NOT NULL,
    tenant_id BIGINT NOT NULL,
    name VARCHAR(128) NOT NULL,
    tenant_type VARCHAR(16) NOT NULL,
    compatibility_mode VARCHAR(16) NOT NULL,
    status VARCHAR(32) NOT NULL,
    tenant_role VARCHAR(16) NOT NULL,
    primary_zone VARCHAR(255) NOT NULL,
    locality VARCHAR(1024) NOT NULL,
    PRIMARY KEY (cluster_id, tenant_id)
) {{options}};

CREATE TABLE unit_configs (
    cluster_id BIGINT NOT NULL,
    unit_config_id BIGINT NOT NULL,
    name VARCHAR(128) NOT NULL,
    max_cpu DOUBLE PRECISION NOT NULL,
    min_cpu DOUBLE PRECISION NOT NULL,
    memory_size BIGINT NOT NULL,
    log_disk_size BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, unit_config_id)
) {{options}};

CREATE TABLE resource_pools (
    cluster_id BIGINT NOT NULL,
    resource_pool_id BIGINT NOT NULL,
    name VARCHAR(128) NOT NULL,
    tenant_id BIGINT,
    unit_count INTEGER NOT NULL,
    unit_config_id BIGINT NOT NULL,
    zone_list VARCHAR(1024) NOT NULL,
    PRIMARY KEY (cluster_id, resource_pool_id)
) {{options}};

CREATE TABLE units (
    cluster_id BIGINT NOT NULL,
    unit_id BIGINT NOT NULL,
    tenant_id BIGINT,
    resource_pool_id BIGINT NOT NULL,
    zone VARCHAR(128) NOT NULL,
    svr_ip VARCHAR(64) NOT NULL,
    svr_port INTEGER NOT NULL,
    status VARCHAR(32) NOT NULL,
    PRIMARY KEY (cluster_id, unit_id)
) {{options}};

CREATE TABLE host_types (
    id {{pk}},
    name VARCHAR(128) NOT NULL UNIQUE,
    description VARCHAR(1024) NOT NULL,
    created_at VARCHAR(40) NOT NULL
) {{options}};

-- Secrets are AES-GCM ciphertexts ("v1:<key id>:<base64>"), never clear text.
CREATE TABLE credentials (
    id {{pk}},
    kind VARCHAR(16) NOT NULL,
    name VARCHAR(255) NOT NULL,
    username VARCHAR(255) NOT NULL,
    secret_type VARCHAR(16) NOT NULL,
    secret {{json}} NOT NULL,
    passphrase {{json}},
    cluster_id BIGINT,
    created_by_task_id BIGINT,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL,
    UNIQUE (kind, name)
) {{options}};

CREATE TABLE hosts (
    id {{pk}},
    ip VARCHAR(64) NOT NULL UNIQUE,
    ssh_port INTEGER NOT NULL,
    kind VARCHAR(32) NOT NULL,
    publish_ports VARCHAR(255),
    host_type_id BIGINT NOT NULL,
    credential_id BIGINT NOT NULL,
    reserved_by_cluster_id BIGINT,
    registered_by_task_id BIGINT,
    host_key {{json}},
    facts {{json}},
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL
) {{options}};

CREATE TABLE cluster_locks (
    lock_key VARCHAR(255) NOT NULL PRIMARY KEY,
    task_id BIGINT NOT NULL,
    workflow_id VARCHAR(255) NOT NULL,
    locked_at VARCHAR(40) NOT NULL
) {{options}};

CREATE TABLE tasks (
    task_id BIGINT NOT NULL PRIMARY KEY,
    workflow_id VARCHAR(255) NOT NULL,
    run_id VARCHAR(64) NOT NULL,
    cluster_id BIGINT,
    name VARCHAR(255) NOT NULL,
    status VARCHAR(32) NOT NULL,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL
) {{options}};

-- Fingerprints of the master keys that encrypted the secrets above.
CREATE TABLE vault_keys (
    key_id VARCHAR(32) NOT NULL PRIMARY KEY,
    check_value VARCHAR(255) NOT NULL,
    active INTEGER NOT NULL,
    created_at VARCHAR(40) NOT NULL
) {{options}}
