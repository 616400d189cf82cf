-- The fleet's node counts over time, for the dashboard's chart (issue 21). One row per sampling
-- period: `bucket` is the period's number (seconds since the epoch / the interval), so when
-- several conductors sample the same period the first insert wins and the others are no-ops.
-- `counts` is JSON: {"provision_state": {"active": 3, ...}, "power_state": {"power on": 3, ...}}.
CREATE TABLE fleet_samples (
    bucket BIGINT PRIMARY KEY,
    taken_at TEXT NOT NULL,
    counts TEXT NOT NULL
);
