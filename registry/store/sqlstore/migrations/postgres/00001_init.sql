-- +goose Up
CREATE TABLE registry_head (
  id BIGINT PRIMARY KEY CHECK (id = 1),
  change_seq BIGINT NOT NULL,
  audit_seq BIGINT NOT NULL,
  audit_hash BYTEA NOT NULL
);
INSERT INTO registry_head (id, change_seq, audit_seq, audit_hash) VALUES (1, 0, 0, decode(repeat('00', 32), 'hex'));
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  external_id TEXT NOT NULL UNIQUE,
  display_name TEXT NOT NULL,
  email TEXT NOT NULL,
  groups_json TEXT NOT NULL,
  status TEXT NOT NULL,
  version BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE keys (
  id TEXT PRIMARY KEY,
  serial TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  firmware TEXT NOT NULL,
  label TEXT NOT NULL,
  owner_id TEXT NOT NULL REFERENCES users(id),
  role TEXT NOT NULL,
  status TEXT NOT NULL,
  version BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX keys_owner ON keys(owner_id);
CREATE TABLE key_sets (
  name TEXT PRIMARY KEY,
  description TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE TABLE key_set_members (
  set_name TEXT NOT NULL REFERENCES key_sets(name),
  key_id TEXT NOT NULL REFERENCES keys(id),
  PRIMARY KEY (set_name, key_id)
);
CREATE INDEX key_set_members_key ON key_set_members(key_id);
CREATE TABLE fido_credentials (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES keys(id),
  credential_id BYTEA NOT NULL,
  rp_id TEXT NOT NULL,
  public_key BYTEA NOT NULL,
  aaguid BYTEA NOT NULL,
  sign_count BIGINT NOT NULL,
  cred_protect BIGINT NOT NULL,
  attestation_object BYTEA,
  verdict TEXT NOT NULL,
  clone_suspected BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  UNIQUE (rp_id, credential_id)
);
CREATE INDEX fido_credentials_key ON fido_credentials(key_id);
CREATE TABLE piv_slots (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES keys(id),
  slot TEXT NOT NULL,
  public_key BYTEA NOT NULL,
  certificate BYTEA,
  attestation_certificate BYTEA,
  verdict TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  UNIQUE (key_id, slot)
);
CREATE TABLE challenges (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES keys(id),
  kind TEXT NOT NULL,
  credential_id TEXT NOT NULL,
  nonce BYTEA NOT NULL,
  expires_at BIGINT NOT NULL,
  used BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE verifications (
  id TEXT PRIMARY KEY,
  challenge_id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  credential_id TEXT NOT NULL,
  ok BIGINT NOT NULL,
  reason TEXT NOT NULL,
  clone_suspected BIGINT NOT NULL,
  at BIGINT NOT NULL
);
CREATE INDEX verifications_key ON verifications(key_id);
CREATE TABLE escrow_blobs (
  key_id TEXT NOT NULL REFERENCES keys(id),
  kind TEXT NOT NULL,
  blob BYTEA NOT NULL,
  version BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (key_id, kind)
);
CREATE TABLE access_passes (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  pass_hash BYTEA NOT NULL UNIQUE,
  reason TEXT NOT NULL,
  expires_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE TABLE changes (
  seq BIGINT NOT NULL,
  idx BIGINT NOT NULL,
  entity TEXT NOT NULL,
  entity_id TEXT NOT NULL,
  op TEXT NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (seq, idx)
);
CREATE TABLE audit_log (
  seq BIGINT PRIMARY KEY,
  at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  payload TEXT NOT NULL,
  prev_hash BYTEA NOT NULL,
  hash BYTEA NOT NULL
);
CREATE TABLE audit_checkpoints (
  seq BIGINT PRIMARY KEY,
  hash BYTEA NOT NULL,
  signature BYTEA NOT NULL
);
CREATE TABLE idempotency (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash BYTEA NOT NULL,
  status BIGINT NOT NULL,
  body BYTEA NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE TABLE tokens (
  hash BYTEA PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  user_id TEXT NOT NULL,
  created_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE tokens; DROP TABLE idempotency; DROP TABLE audit_checkpoints; DROP TABLE audit_log;
DROP TABLE changes; DROP TABLE access_passes; DROP TABLE escrow_blobs; DROP TABLE verifications;
DROP TABLE challenges; DROP TABLE piv_slots; DROP TABLE fido_credentials; DROP TABLE key_set_members;
DROP TABLE key_sets; DROP TABLE keys; DROP TABLE users; DROP TABLE registry_head;
