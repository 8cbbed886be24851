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
-- key_health keeps, per key, what a readiness report needs without
-- scanning verifications and reports: the last successful and failed
-- verification (a possible clone counts as failed) and the last failure
-- report and PIN-blocked report from an auth server.
CREATE TABLE key_health (
  key_id TEXT PRIMARY KEY REFERENCES keys(id),
  last_ok_at BIGINT NOT NULL,
  last_fail_at BIGINT NOT NULL,
  last_signal_at BIGINT NOT NULL,
  last_pin_at BIGINT NOT NULL
);
-- Readiness asks, per key of the target set, whether it holds a usable
-- FIDO2 credential: one index probe.
CREATE INDEX fido_credentials_key_usable ON fido_credentials(key_id, clone_suspected);
INSERT INTO key_health (key_id, last_ok_at, last_fail_at, last_signal_at, last_pin_at)
SELECT key_id, COALESCE(MAX(CASE WHEN ok = 1 AND clone_suspected = 0 THEN at END), 0), COALESCE(MAX(CASE WHEN ok = 0 OR clone_suspected = 1 THEN at END), 0), 0, 0
FROM verifications WHERE key_id IN (SELECT id FROM keys) GROUP BY key_id;

-- +goose Down
DROP INDEX fido_credentials_key_usable; DROP TABLE key_health; DROP TABLE migration_signals; DROP TABLE migration_cutovers; DROP TABLE migrations;
