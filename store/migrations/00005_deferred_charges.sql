-- Work that finishes after its request's response — background Responses
-- and Batches — and the per-project policy that may refuse it.
-- Shared by SQLite and PostgreSQL, like the others: times are BIGINT unix
-- microseconds (settled_at NULL while the charge is outstanding), money is
-- BIGINT micro-USD.
--
-- deferred_charges holds the cost reserved when such an object was created,
-- keyed by OpenAI's object id, until it is settled from OpenAI's record,
-- exactly once. Like usage_daily it has no foreign key to projects: what a
-- deleted project's outstanding work costs is still owed and still settled.
--
-- The partial index holds only unsettled charges, in the order the
-- reconciler takes them (due first); settled rows, which are most of the
-- table over time, stay out of it.
--
-- Projects created before this migration allow both kinds of work, as the
-- gateway always did.

-- +goose Up
ALTER TABLE projects ADD COLUMN allow_background BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE projects ADD COLUMN allow_batches BOOLEAN NOT NULL DEFAULT TRUE;

CREATE TABLE deferred_charges (
    id                 TEXT    PRIMARY KEY,
    kind               TEXT    NOT NULL,
    project_id         TEXT    NOT NULL,
    token_id           TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    ticket             TEXT    NOT NULL DEFAULT '',
    reserved_micro_usd BIGINT  NOT NULL,
    created_at         BIGINT  NOT NULL,
    next_check_at      BIGINT  NOT NULL,
    checks             INTEGER NOT NULL DEFAULT 0,
    settled_at         BIGINT  NULL,
    cost_micro_usd     BIGINT  NOT NULL DEFAULT 0
);

CREATE INDEX deferred_charges_due_idx ON deferred_charges (next_check_at, id) WHERE settled_at IS NULL;

-- +goose Down
DROP TABLE deferred_charges;

ALTER TABLE projects DROP COLUMN allow_batches;
ALTER TABLE projects DROP COLUMN allow_background;
