-- +goose Up
-- A credential added to a key already in service without an attestation
-- the registry trusts stays out of the validity view until it passes a
-- verification of its own (registry.CredentialPending).
ALTER TABLE fido_credentials ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE piv_slots ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE piv_slots DROP COLUMN pending;
ALTER TABLE fido_credentials DROP COLUMN pending;
