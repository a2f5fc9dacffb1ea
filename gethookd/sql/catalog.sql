-- name: insert_source
INSERT INTO sources (id, account_id, name, path_token, auth_mode, provider,
                     verification_config_enc)
VALUES (%(id)s, %(account_id)s, %(name)s, %(path_token)s, %(auth_mode)s, %(provider)s,
        %(verification_config_enc)s)
RETURNING *;

-- name: list_sources
SELECT * FROM sources WHERE account_id = %(account_id)s ORDER BY created_at, id;

-- name: get_source
SELECT * FROM sources WHERE id = %(id)s AND account_id = %(account_id)s;

-- name: source_by_token
SELECT * FROM sources WHERE path_token = %(token)s;

-- name: insert_destination
INSERT INTO destinations (id, account_id, name, url, timeout_seconds, signing_secret_enc,
                          auth_config_enc, custom_headers, preset)
VALUES (%(id)s, %(account_id)s, %(name)s, %(url)s, %(timeout_seconds)s, %(signing_secret_enc)s,
        %(auth_config_enc)s, %(custom_headers)s, %(preset)s)
RETURNING *;

-- name: list_destinations
SELECT * FROM destinations WHERE account_id = %(account_id)s ORDER BY created_at, id;

-- name: get_destination
SELECT * FROM destinations WHERE id = %(id)s AND account_id = %(account_id)s;

-- name: insert_route
INSERT INTO routes (account_id, source_id, destination_id, event_type_pattern, max_attempts,
                    backoff)
VALUES (%(account_id)s, %(source_id)s, %(destination_id)s, %(event_type_pattern)s,
        %(max_attempts)s, %(backoff)s)
RETURNING *;

-- name: list_routes
SELECT * FROM routes WHERE account_id = %(account_id)s ORDER BY created_at, id;

-- name: routes_for_source
-- An inactive route routes nothing; an inactive destination still gets its deliveries
-- queued (it is paused: the claim leaves them waiting until it is active again).
SELECT r.destination_id, r.event_type_pattern, r.max_attempts, r.backoff
FROM routes r
WHERE r.source_id = %(source_id)s AND r.active;

-- name: delete_source
DELETE FROM sources WHERE id = %(id)s AND account_id = %(account_id)s RETURNING id;

-- name: update_destination
-- Each field changes only when its set_* flag is true, so PATCH can also clear a field.
-- active=true also re-enables: it clears a disabled state and closes the circuit (the
-- operator says the destination is fixed; a failure opens it again as usual).
UPDATE destinations SET
    disabled_at = CASE WHEN %(set_active)s AND %(active)s THEN NULL ELSE disabled_at END,
    disabled_reason = CASE WHEN %(set_active)s AND %(active)s THEN NULL
                      ELSE disabled_reason END,
    circuit_state = CASE WHEN %(set_active)s AND %(active)s THEN 'closed'
                    ELSE circuit_state END,
    circuit_open_until = CASE WHEN %(set_active)s AND %(active)s THEN NULL
                         ELSE circuit_open_until END,
    circuit_opens = CASE WHEN %(set_active)s AND %(active)s THEN 0 ELSE circuit_opens END,
    circuit_probe_id = CASE WHEN %(set_active)s AND %(active)s THEN NULL
                       ELSE circuit_probe_id END,
    consecutive_failures = CASE WHEN %(set_active)s AND %(active)s THEN 0
                           ELSE consecutive_failures END,
    failing_since = CASE WHEN %(set_active)s AND %(active)s THEN NULL ELSE failing_since END,
    -- Its held deliveries are released in the background (release_held_chunks).
    releasing_since = CASE WHEN %(set_active)s AND %(active)s THEN now()
                      ELSE releasing_since END,
    name = CASE WHEN %(set_name)s THEN %(name)s ELSE name END,
    url = CASE WHEN %(set_url)s THEN %(url)s ELSE url END,
    timeout_seconds = CASE WHEN %(set_timeout_seconds)s THEN %(timeout_seconds)s
                      ELSE timeout_seconds END,
    active = CASE WHEN %(set_active)s THEN %(active)s ELSE active END,
    auth_config_enc = CASE WHEN %(set_auth_config)s THEN %(auth_config_enc)s
                      ELSE auth_config_enc END,
    custom_headers = CASE WHEN %(set_custom_headers)s THEN %(custom_headers)s
                     ELSE custom_headers END,
    updated_at = now()
WHERE id = %(id)s AND account_id = %(account_id)s
RETURNING *;

-- name: lock_destination_secret
SELECT signing_secret_enc FROM destinations
WHERE id = %(id)s AND account_id = %(account_id)s
FOR UPDATE;

-- name: set_destination_secret
-- The replaced secret (re-sealed as previous) keeps signing for grace_seconds.
UPDATE destinations SET signing_secret_enc = %(enc)s,
    previous_signing_secret_enc = %(previous_enc)s,
    previous_secret_expires_at = CASE WHEN %(previous_enc)s::text IS NULL THEN NULL
        ELSE now() + make_interval(secs => %(grace_seconds)s) END,
    updated_at = now()
WHERE id = %(id)s AND account_id = %(account_id)s
RETURNING *;

-- name: delete_destination
DELETE FROM destinations WHERE id = %(id)s AND account_id = %(account_id)s RETURNING id;

-- name: get_route
SELECT * FROM routes WHERE id = %(id)s AND account_id = %(account_id)s;

-- name: update_route
UPDATE routes SET
    active = CASE WHEN %(set_active)s THEN %(active)s ELSE active END,
    event_type_pattern = CASE WHEN %(set_pattern)s THEN %(event_type_pattern)s
                         ELSE event_type_pattern END,
    max_attempts = COALESCE(%(max_attempts)s, max_attempts),
    backoff = COALESCE(%(backoff)s, backoff)
WHERE id = %(id)s AND account_id = %(account_id)s
RETURNING *;

-- name: delete_route
DELETE FROM routes WHERE id = %(id)s AND account_id = %(account_id)s RETURNING id;

-- name: routes_for_outbound
-- As routes_for_source: routes with no source serve outbound events.
SELECT r.destination_id, r.event_type_pattern, r.max_attempts, r.backoff
FROM routes r
WHERE r.account_id = %(account_id)s AND r.source_id IS NULL AND r.active;

-- name: notify_catalog
-- Sent in every transaction that changes what ingest reads (sources, routes, destinations
-- they point at): API processes drop their cached sources and routes when it commits.
NOTIFY gethookd_catalog;

-- name: listen_catalog
LISTEN gethookd_catalog;
