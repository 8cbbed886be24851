-- +goose Up
-- Which identity provider holds which of a key's FIDO2 credentials, under
-- which method id (app/idp): the link is written when the provider accepts
-- the credential and marked deleted when the desk deletes the method there.
-- nonce is the desk's intent id, also in the method's display name, so a
-- write replayed after a crash finds the method it already made.
CREATE TABLE idp_links (
  id TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  method_id TEXT NOT NULL,
  credential_id BLOB NOT NULL,
  key_id TEXT NOT NULL REFERENCES keys(id),
  user_id TEXT NOT NULL REFERENCES users(id),
  nonce TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  deleted_at INTEGER NOT NULL DEFAULT 0,
  UNIQUE (provider, method_id)
);
CREATE INDEX idp_links_key ON idp_links(key_id);
CREATE INDEX idp_links_user ON idp_links(user_id);

-- The methods a provider listed for a user, the last time the desk looked
-- (POST /v1/idp-observations); drift is computed from them and the links.
CREATE TABLE idp_observations (
  provider TEXT NOT NULL,
  user_id TEXT NOT NULL REFERENCES users(id),
  observed_at INTEGER NOT NULL,
  methods BLOB NOT NULL,
  PRIMARY KEY (provider, user_id)
);

-- +goose Down
DROP TABLE idp_observations;
DROP TABLE idp_links;
