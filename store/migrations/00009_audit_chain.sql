-- The audit log is tamper-evident: each event appended from now on takes the
-- next position in one chain (seq, from 1, without gaps) and stores the hash
-- of the event before it (prev_hash) and its own hash over its content,
-- position and prev_hash (see store.AuditHash). Events stored before this
-- migration have no seq and are outside the chain. The unique index also
-- makes a fork impossible: two appends can never both take one position.
-- Shared by SQLite and PostgreSQL, like the others.

-- +goose Up
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_events ADD COLUMN hash TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX audit_events_seq_idx ON audit_events (seq);

-- +goose Down
DROP INDEX audit_events_seq_idx;
ALTER TABLE audit_events DROP COLUMN hash;
ALTER TABLE audit_events DROP COLUMN prev_hash;
ALTER TABLE audit_events DROP COLUMN seq;
