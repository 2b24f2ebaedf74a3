-- What a project's and a token's requests may do (policy.Rules, a JSON
-- document): model allowlists, parameter values, body caps, CORS. Empty
-- allows everything, as before: existing projects and tokens keep working.

-- +goose Up
ALTER TABLE projects ADD COLUMN rules TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN rules TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE tokens DROP COLUMN rules;
ALTER TABLE projects DROP COLUMN rules;
