-- Tokens imported from the predecessor proxy (`llm-proxy import predecessor`).
-- Their secrets are the predecessor's "sk-…" strings, with less entropy than
-- ours, and their hash column holds either our HMAC of the secret (when the
-- predecessor stored it in clear) or "sha256:" and the hex SHA-256 the
-- predecessor stored instead; authz looks a legacy secret up both ways. The
-- flag shows them in the API and CLI so operators can replace them.
-- Shared by SQLite and PostgreSQL, like the others.

-- +goose Up
ALTER TABLE tokens ADD COLUMN legacy BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE tokens DROP COLUMN legacy;
