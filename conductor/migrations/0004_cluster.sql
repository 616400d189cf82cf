-- Several conductors on one database (issue 18).
-- The node lock is a lease with a fencing number: every acquisition, and every break of a dead
-- conductor's lock, adds one, and a node is written only by the holder of the current number.
ALTER TABLE nodes ADD COLUMN lock_token BIGINT NOT NULL DEFAULT 0;
-- Which conductor wrote a history event (Ironic's node history `conductor` field).
ALTER TABLE node_history ADD COLUMN conductor TEXT;
-- Lock history (only with lock_history = true): who held which lock number of which node, and
-- who ended it (the holder, or the conductor that took over from a dead one).
CREATE TABLE node_locks (
    node_uuid TEXT NOT NULL,
    token BIGINT NOT NULL,
    conductor TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    released_at TEXT,
    released_by TEXT,
    PRIMARY KEY (node_uuid, token)
);
-- Requests handed to a node's owner by the conductor that received them (a verb for a node owned
-- elsewhere; every verb and heartbeat an api_only conductor receives). The receiver inserts a
-- row addressed to the owner and waits for `result`; the owner claims rows addressed to it
-- (woken by NOTIFY rivet_work on PostgreSQL) and writes the result.
CREATE TABLE node_work (
    id TEXT PRIMARY KEY,
    node_uuid TEXT NOT NULL,
    conductor TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at TEXT NOT NULL,
    claimed_at TEXT,
    result TEXT
);
CREATE INDEX node_work_conductor ON node_work (conductor);
