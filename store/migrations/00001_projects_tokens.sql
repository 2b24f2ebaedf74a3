-- One schema for SQLite and PostgreSQL: only types and syntax both accept.
-- Times are BIGINT unix microseconds (NULL where the Go field is a nil pointer),
-- so both backends store exactly the same value and compare it the same way.

-- +goose Up
CREATE TABLE projects (
    id             TEXT    PRIMARY KEY,
    name           TEXT    NOT NULL,
    key_ciphertext TEXT    NOT NULL,
    key_id         TEXT    NOT NULL,
    key_hint       TEXT    NOT NULL,
    active         BOOLEAN NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

CREATE TABLE tokens (
    id              TEXT    PRIMARY KEY,
    project_id      TEXT    NOT NULL REFERENCES projects (id),
    name            TEXT    NOT NULL,
    hash            TEXT    NOT NULL UNIQUE,
    prefix          TEXT    NOT NULL,
    active          BOOLEAN NOT NULL,
    expires_at      BIGINT,
    max_requests    BIGINT,
    request_count   BIGINT  NOT NULL DEFAULT 0,
    cache_hit_count BIGINT  NOT NULL DEFAULT 0,
    last_used_at    BIGINT,
    revoked_at      BIGINT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

CREATE INDEX tokens_project_id_idx ON tokens (project_id);

-- +goose Down
DROP TABLE tokens;
DROP TABLE projects;
