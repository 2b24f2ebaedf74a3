-- Indexes for the audit log's search filters (GET /manage/audit): actor,
-- token (target_type 'token' and its id), outcome and client address, each
-- followed by time so a filter over a time range, newest first, reads only
-- its own rows. Shared by SQLite and PostgreSQL, like the others.

-- +goose Up
CREATE INDEX audit_events_actor_time_idx ON audit_events (actor, time);
CREATE INDEX audit_events_target_time_idx ON audit_events (target_type, target_id, time);
CREATE INDEX audit_events_outcome_time_idx ON audit_events (outcome, time);
CREATE INDEX audit_events_client_time_idx ON audit_events (client_address, time);

-- +goose Down
DROP INDEX audit_events_client_time_idx;
DROP INDEX audit_events_outcome_time_idx;
DROP INDEX audit_events_target_time_idx;
DROP INDEX audit_events_actor_time_idx;
