-- The hardware inventory an agent posted (/v1/continue_inspection), as Ironic keeps it for
-- GET /v1/nodes/{node}/inventory. One row per node; a new inspection replaces it.
CREATE TABLE node_inventory (
    node_uuid TEXT PRIMARY KEY,
    inventory TEXT NOT NULL,
    plugin_data TEXT NOT NULL,
    created_at TEXT NOT NULL
);
