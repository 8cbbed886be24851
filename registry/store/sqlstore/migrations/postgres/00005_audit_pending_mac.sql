-- +goose Up
-- Pending audit entries carry an HMAC under a key derived from the audit
-- signing key (audit.PendingMAC): the sequencer chains only rows the
-- registry's write path produced.
ALTER TABLE audit_pending ADD COLUMN mac BYTEA;
-- Pending rows whose MAC failed: never chained, reported by verification.
CREATE TABLE audit_quarantine (
  id BIGINT NOT NULL, -- the pending row's id (not unique: a forged row may repeat one)
  at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  payload TEXT NOT NULL,
  mac BYTEA,
  found_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE audit_quarantine;
ALTER TABLE audit_pending DROP COLUMN mac;
