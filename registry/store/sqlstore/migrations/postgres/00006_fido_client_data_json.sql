-- +goose Up
-- The clientDataJSON a FIDO2 registration's attestation signed (WebAuthn
-- L2 §5.2.1, §7.1 steps 5-12), kept so that anyone can verify the
-- registration again later. Rows made before it keep only the hash.
ALTER TABLE fido_credentials ADD COLUMN attestation_client_data_json BYTEA;

-- +goose Down
ALTER TABLE fido_credentials DROP COLUMN attestation_client_data_json;
