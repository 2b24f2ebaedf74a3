-- Per-project opt-in to caching POST responses (chat completions and the
-- like) without each client sending Cache-Control: public. Off by default:
-- caching a POST changes what a client gets for a repeated question.

-- +goose Up
ALTER TABLE projects ADD COLUMN cache_post BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE projects DROP COLUMN cache_post;
