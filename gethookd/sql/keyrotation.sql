-- Encryption-key rotation: find values not sealed with the current key (their prefix is
-- not `v1:<current key id>:`) and write them back re-sealed, a small batch per transaction.
-- Rows a live request holds are skipped (SKIP LOCKED) and picked up by the next pass.

-- name: rotation_count_stale
SELECT
    (SELECT count(*) FILTER (WHERE signing_secret_enc NOT LIKE %(current)s)
          + count(*) FILTER (WHERE previous_signing_secret_enc NOT LIKE %(current)s)
          + count(*) FILTER (WHERE auth_config_enc NOT LIKE %(current)s)
     FROM destinations) AS destinations,
    (SELECT count(*) FILTER (WHERE verification_config_enc NOT LIKE %(current)s)
     FROM sources) AS sources

-- name: rotation_destinations_batch
SELECT id, signing_secret_enc, previous_signing_secret_enc, auth_config_enc
FROM destinations
WHERE id > %(after)s
  AND (signing_secret_enc NOT LIKE %(current)s
       OR previous_signing_secret_enc NOT LIKE %(current)s
       OR auth_config_enc NOT LIKE %(current)s)
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: rotation_destinations_update
UPDATE destinations
SET signing_secret_enc = %(signing_secret_enc)s,
    previous_signing_secret_enc = %(previous_signing_secret_enc)s,
    auth_config_enc = %(auth_config_enc)s
WHERE id = %(id)s

-- name: rotation_sources_batch
SELECT id, verification_config_enc
FROM sources
WHERE id > %(after)s AND verification_config_enc NOT LIKE %(current)s
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: rotation_sources_update
UPDATE sources SET verification_config_enc = %(verification_config_enc)s WHERE id = %(id)s
