-- Rivet conductor schema, version 1. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- JSON documents are stored as TEXT; booleans as BIGINT 0/1; times as ISO 8601 TEXT (UTC).

CREATE TABLE nodes (
    uuid TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    driver TEXT NOT NULL,
    -- {"boot_interface": "fake", ...}: the interface chosen for each kind.
    interfaces TEXT NOT NULL,
    driver_info TEXT NOT NULL,
    driver_internal_info TEXT NOT NULL,
    properties TEXT NOT NULL,
    instance_info TEXT NOT NULL,
    extra TEXT NOT NULL,
    -- Other API fields (description, owner, automated_clean, ...), as one JSON object.
    attrs TEXT NOT NULL,
    provision_state TEXT NOT NULL,
    target_provision_state TEXT,
    provision_updated_at TEXT,
    power_state TEXT,
    target_power_state TEXT,
    last_error TEXT,
    maintenance BIGINT NOT NULL,
    maintenance_reason TEXT,
    fault TEXT,
    -- Exclusive lock: the hostname of the conductor holding it.
    reservation TEXT,
    clean_step TEXT NOT NULL,
    deploy_step TEXT NOT NULL,
    service_step TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT
);

CREATE INDEX nodes_provision_state ON nodes (provision_state);
CREATE INDEX nodes_reservation ON nodes (reservation);

CREATE TABLE ports (
    uuid TEXT PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    node_uuid TEXT NOT NULL REFERENCES nodes (uuid),
    pxe_enabled BIGINT NOT NULL,
    attrs TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT
);

CREATE INDEX ports_node_uuid ON ports (node_uuid);

CREATE TABLE conductors (
    hostname TEXT PRIMARY KEY,
    drivers TEXT NOT NULL,
    conductor_group TEXT NOT NULL,
    online BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT
);

CREATE TABLE node_history (
    uuid TEXT PRIMARY KEY,
    node_uuid TEXT NOT NULL,
    created_at TEXT NOT NULL,
    severity TEXT NOT NULL,
    event TEXT NOT NULL
);

CREATE INDEX node_history_node ON node_history (node_uuid);
