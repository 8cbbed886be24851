-- +goose Up
-- Attestation is checked by the registry: what it needs to re-check, and why
-- a verdict is what it is. Verdicts recorded before were the client's claim
-- and are reset to "none" (nothing checked).
ALTER TABLE fido_credentials ADD COLUMN attestation_client_data_hash BLOB;
ALTER TABLE fido_credentials ADD COLUMN verdict_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE piv_slots ADD COLUMN attestation_intermediate BLOB;
ALTER TABLE piv_slots ADD COLUMN verdict_reason TEXT NOT NULL DEFAULT '';
UPDATE fido_credentials SET verdict = 'none', verdict_reason = 'recorded before the registry checked attestation';
UPDATE piv_slots SET verdict = 'none', verdict_reason = 'recorded before the registry checked attestation';
-- Temporary access passes are single use; tokens can be revoked.
ALTER TABLE access_passes ADD COLUMN redeemed_at BIGINT;
CREATE INDEX access_passes_user ON access_passes(user_id);
ALTER TABLE tokens ADD COLUMN revoked_at BIGINT;
-- The janitor deletes idempotency rows and challenges by age.
CREATE INDEX idempotency_created ON idempotency(created_at);
CREATE INDEX challenges_expires ON challenges(expires_at);
-- Secrets every registry on this database shares (the challenge HMAC key).
CREATE TABLE registry_secrets (
  name TEXT PRIMARY KEY,
  value BLOB NOT NULL
);
-- Audit entries committed with their change set, waiting to be chained
-- (sqlstore/sequencer.go).
CREATE TABLE audit_pending (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  payload TEXT NOT NULL
);
-- Audit listing filters by actor and action.
CREATE INDEX audit_log_actor ON audit_log(actor, seq);
CREATE INDEX audit_log_action ON audit_log(action, seq);

-- +goose Down
DROP TABLE audit_pending;
DROP TABLE registry_secrets;
DROP INDEX audit_log_action;
DROP INDEX audit_log_actor;
DROP INDEX challenges_expires;
DROP INDEX idempotency_created;
ALTER TABLE tokens DROP COLUMN revoked_at;
DROP INDEX access_passes_user;
ALTER TABLE access_passes DROP COLUMN redeemed_at;
ALTER TABLE piv_slots DROP COLUMN verdict_reason;
ALTER TABLE piv_slots DROP COLUMN attestation_intermediate;
ALTER TABLE fido_credentials DROP COLUMN verdict_reason;
ALTER TABLE fido_credentials DROP COLUMN attestation_client_data_hash;
