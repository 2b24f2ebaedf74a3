-- Limits on projects and tokens, project budgets, and the daily usage roll-up.
-- Shared by SQLite and PostgreSQL, like 00001: NULL is "unlimited" / "no
-- budget", money is BIGINT micro-USD, days are 'YYYY-MM-DD' text (UTC), which
-- compares in date order on both backends.
--
-- usage_daily has no foreign key to projects on purpose: usage is billing
-- history and outlives a deleted project (project ids are random and never
-- reused), and a usage flush racing a project deletion must not fail.

-- +goose Up
ALTER TABLE projects ADD COLUMN requests_per_minute BIGINT;
ALTER TABLE projects ADD COLUMN tokens_per_minute BIGINT;
ALTER TABLE projects ADD COLUMN max_concurrent BIGINT;
ALTER TABLE projects ADD COLUMN monthly_budget_micro_usd BIGINT;

ALTER TABLE tokens ADD COLUMN requests_per_minute BIGINT;
ALTER TABLE tokens ADD COLUMN tokens_per_minute BIGINT;
ALTER TABLE tokens ADD COLUMN max_concurrent BIGINT;

CREATE TABLE usage_daily (
    project_id        TEXT   NOT NULL,
    day               TEXT   NOT NULL,
    model             TEXT   NOT NULL,
    price_version     TEXT   NOT NULL,
    requests          BIGINT NOT NULL DEFAULT 0,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens     BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens  BIGINT NOT NULL DEFAULT 0,
    cost_micro_usd    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, day, model, price_version)
);

-- +goose Down
DROP TABLE usage_daily;

ALTER TABLE tokens DROP COLUMN max_concurrent;
ALTER TABLE tokens DROP COLUMN tokens_per_minute;
ALTER TABLE tokens DROP COLUMN requests_per_minute;

ALTER TABLE projects DROP COLUMN monthly_budget_micro_usd;
ALTER TABLE projects DROP COLUMN max_concurrent;
ALTER TABLE projects DROP COLUMN tokens_per_minute;
ALTER TABLE projects DROP COLUMN requests_per_minute;
