-- name: insert_source
INSERT INTO sources (account_id, name, path_token, auth_mode, provider)
VALUES (%(account_id)s, %(name)s, %(path_token)s, %(auth_mode)s, %(provider)s)
RETURNING *;

-- name: set_source_verification
UPDATE sources SET verification_config_enc = %(enc)s WHERE id = %(id)s RETURNING *;

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
SELECT r.destination_id, r.event_type_pattern, r.max_attempts, r.backoff
FROM routes r JOIN destinations d ON d.id = r.destination_id
WHERE r.source_id = %(source_id)s AND r.active AND d.active;
