-- Version 14: signatures are countersigned by the hub's clock key (SM2 by default). The
-- countersignature block {algorithm, key_id, time, value} is kept beside the signature as JSON,
-- exactly as the signed document carries it; NULL for rows signed before version 14 (they fail
-- the countersignature check of /verify). Final rows stay never-updated: the block is written with
-- the row. Keys themselves need no change: `signing_keys.algorithm` already holds "SM2" or
-- "Ed25519", and the hub clock key is published there with owner 'hub'.
ALTER TABLE reports ADD COLUMN countersignature TEXT;
ALTER TABLE lab_signoffs ADD COLUMN countersignature TEXT;
