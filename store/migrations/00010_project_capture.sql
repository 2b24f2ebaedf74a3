-- Per-project capture of request and response bodies into usage events
-- (policy.Capture, a JSON document). Empty means off, as for every project
-- that predates it: prompts are the customer's data.

-- +goose Up
ALTER TABLE projects ADD COLUMN capture TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE projects DROP COLUMN capture;
