-- The usage roll-up counts errors: requests of a project whose client got an
-- error status, refused by the sidecar or answered 4xx/5xx by the upstream
-- (see store.UsageRecord.Errors). Rows written before it count none.
-- Shared by SQLite and PostgreSQL, like the others.

-- +goose Up
ALTER TABLE usage_daily ADD COLUMN errors BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE usage_daily DROP COLUMN errors;
