-- Where a stored credential may be used, and what a task found before it changed a cluster user.

-- A CLUSTER credential logs in only at the endpoints it lists (JSON list of "address:port") and, once a
-- login has shown which cluster answers there, only to that cluster ("name:obClusterId").
ALTER TABLE credentials ADD COLUMN endpoints {{json}};

ALTER TABLE credentials ADD COLUMN bound_cluster VARCHAR(255);

-- A HOST credential logs in only to the hosts it lists (JSON list of addresses and networks).
ALTER TABLE credentials ADD COLUMN hosts {{json}};

-- For a cluster user's credential: 1 when the user existed before the task that stored the credential.
ALTER TABLE credentials ADD COLUMN user_existed INTEGER;
