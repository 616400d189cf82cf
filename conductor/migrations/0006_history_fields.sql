-- Node history as Ironic keeps it (issue 21): the kind of activity (`event_type`), who asked
-- (`user_id`, `project`; Ironic's `user` and `project`), and the node's provision state, its
-- target and the seconds it had been in that state when the event was recorded (API 1.115).
ALTER TABLE node_history ADD COLUMN event_type TEXT;
ALTER TABLE node_history ADD COLUMN user_id TEXT;
ALTER TABLE node_history ADD COLUMN project TEXT;
ALTER TABLE node_history ADD COLUMN state TEXT;
ALTER TABLE node_history ADD COLUMN target_provision_state TEXT;
ALTER TABLE node_history ADD COLUMN duration_seconds BIGINT;
CREATE INDEX node_history_node_created ON node_history (node_uuid, created_at);
