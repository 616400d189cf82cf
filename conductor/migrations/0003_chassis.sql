-- Chassis (/v1/chassis): a grouping of nodes, as Ironic keeps it. Nodes name theirs in
-- attrs.chassis_uuid.
CREATE TABLE chassis (
    uuid TEXT PRIMARY KEY,
    description TEXT,
    extra TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT
);
