-- The REST API: its users, and task and cluster ids that are allocated once and never reused.

-- API users. The password is a slow scrypt hash (metadb/users.py), never reversible.
CREATE TABLE users (
    id {{pk}},
    name VARCHAR(64) NOT NULL UNIQUE,
    role VARCHAR(32) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL
) {{options}};

-- One auto-increment row per id handed out; ids already in use are taken first.
CREATE TABLE task_ids (
    id {{pk}},
    created_at VARCHAR(40) NOT NULL
) {{options}};

CREATE TABLE cluster_ids (
    id {{pk}},
    created_at VARCHAR(40) NOT NULL
) {{options}};

INSERT INTO task_ids (id, created_at) SELECT task_id, created_at FROM tasks;

INSERT INTO cluster_ids (id, created_at) SELECT id, created_at FROM clusters;

-- Who started a task through the API, and the API request's trace id.
ALTER TABLE tasks ADD COLUMN creator VARCHAR(64);

ALTER TABLE tasks ADD COLUMN trace_id VARCHAR(64);
