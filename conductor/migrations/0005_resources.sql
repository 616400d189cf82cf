-- The resources Ironic serves besides nodes, ports and chassis (issue 19), kept as documents:
-- port groups, volume connectors and targets (each of one node), deploy templates, runbooks and
-- allocations (an allocation names its node once it has one). `doc` holds the API fields other
-- than uuid, node_uuid and the times. `key_a` and `key_b` carry each kind's uniqueness rules (a
-- port group's address and name; a connector's type and id; a target's node and boot index; a
-- template's, runbook's or allocation's name), NULL where the rule does not apply (NULLs never
-- collide, in SQLite and PostgreSQL alike).
CREATE TABLE resources (
    uuid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    node_uuid TEXT REFERENCES nodes (uuid),
    key_a TEXT,
    key_b TEXT,
    doc TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT
);
CREATE UNIQUE INDEX resources_key_a ON resources (kind, key_a);
CREATE UNIQUE INDEX resources_key_b ON resources (kind, key_b);
CREATE INDEX resources_node ON resources (kind, node_uuid);
