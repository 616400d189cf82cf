-- What belongs to a node besides its ports, kept as Ironic serves it (issue 19): port groups,
-- volume connectors and volume targets. `doc` holds the API fields other than uuid, node_uuid
-- and the times. `key_a` and `key_b` carry each kind's uniqueness rules (a port group's address
-- and name; a connector's type and id; a target's node and boot index), NULL where the rule
-- does not apply (NULLs never collide, in SQLite and PostgreSQL alike).
CREATE TABLE node_resources (
    uuid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    node_uuid TEXT NOT NULL REFERENCES nodes (uuid),
    key_a TEXT,
    key_b TEXT,
    doc TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT
);
CREATE UNIQUE INDEX node_resources_key_a ON node_resources (kind, key_a);
CREATE UNIQUE INDEX node_resources_key_b ON node_resources (kind, key_b);
CREATE INDEX node_resources_node ON node_resources (kind, node_uuid);
