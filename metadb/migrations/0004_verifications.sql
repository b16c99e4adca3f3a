-- The latest verification of each managed cluster: when it ran, how many drifts it found, and its report
-- (JSON: the findings, never a password).
CREATE TABLE verifications (
    cluster_id BIGINT NOT NULL PRIMARY KEY,
    checked_at VARCHAR(40) NOT NULL,
    drift INTEGER NOT NULL,
    report {{json}} NOT NULL
) {{options}};
