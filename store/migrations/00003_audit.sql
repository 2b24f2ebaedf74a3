-- The audit log: one row per management change and per security denial.
-- Shared by SQLite and PostgreSQL, like 00001 and 00002: time is BIGINT unix
-- microseconds, and project_id is NULL for an event about no project (e.g. a
-- request with an unknown token).
--
-- Like usage_daily, audit_events has no foreign key to projects: the record
-- of a project's changes must outlive the project, and its deletion is one
-- of the events.
--
-- Pages are read newest first by (time, id); the other two indexes serve the
-- project and action filters over a time range.

-- +goose Up
CREATE TABLE audit_events (
    id             TEXT   PRIMARY KEY,
    time           BIGINT NOT NULL,
    action         TEXT   NOT NULL,
    actor          TEXT   NOT NULL,
    project_id     TEXT,
    target_type    TEXT   NOT NULL,
    target_id      TEXT   NOT NULL,
    request_id     TEXT   NOT NULL,
    client_address TEXT   NOT NULL,
    outcome        TEXT   NOT NULL,
    detail         TEXT   NOT NULL
);

CREATE INDEX audit_events_time_id_idx ON audit_events (time, id);
CREATE INDEX audit_events_project_time_idx ON audit_events (project_id, time);
CREATE INDEX audit_events_action_time_idx ON audit_events (action, time);

-- +goose Down
DROP TABLE audit_events;
