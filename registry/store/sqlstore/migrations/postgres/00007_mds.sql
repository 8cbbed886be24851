-- +goose Up
-- The FIDO Metadata Service v3 BLOB the registry loaded last
-- (keydesk-registry mds update): its serial number, nextUpdate, digest and
-- the FIDO2 entries kept from it (registry/mds.Set as JSON). One row.
CREATE TABLE mds_blob (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  no BIGINT NOT NULL,
  next_update BIGINT NOT NULL,
  sha256 TEXT NOT NULL,
  entries BYTEA NOT NULL,
  loaded_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE mds_blob;
