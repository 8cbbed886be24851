-- +goose Up
CREATE TABLE migrations (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  from_set TEXT NOT NULL REFERENCES key_sets(name),
  to_set TEXT NOT NULL REFERENCES key_sets(name),
  plan_json TEXT NOT NULL,
  state TEXT NOT NULL,
  percent DOUBLE PRECISION NOT NULL,
  stage TEXT NOT NULL,
  stage_cohort BIGINT NOT NULL,
  stage_affected BIGINT NOT NULL,
  stage_started BIGINT NOT NULL,
  halted BIGINT NOT NULL,
  halt_reason TEXT NOT NULL,
  version BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE migration_cutovers (
  migration_id TEXT NOT NULL REFERENCES migrations(id),
  user_id TEXT NOT NULL REFERENCES users(id),
  from_set TEXT NOT NULL,
  to_set TEXT NOT NULL,
  stage TEXT NOT NULL,
  PRIMARY KEY (migration_id, user_id)
);
CREATE INDEX migration_cutovers_user ON migration_cutovers(user_id);
CREATE TABLE migration_signals (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  credential_id BYTEA,
  kind TEXT NOT NULL,
  reason TEXT NOT NULL,
  migration_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  at BIGINT NOT NULL
);
CREATE INDEX migration_signals_key ON migration_signals(key_id, at);
CREATE INDEX verifications_key_ok_at ON verifications(key_id, ok, at);

-- +goose Down
DROP INDEX verifications_key_ok_at; DROP TABLE migration_signals; DROP TABLE migration_cutovers; DROP TABLE migrations;
