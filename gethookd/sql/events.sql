-- name: insert_event
INSERT INTO events (account_id, direction, source_id, event_type, external_event_id, headers,
                    body, content_type, status, payload_hash, created_by, replay_of)
VALUES (%(account_id)s, %(direction)s, %(source_id)s, %(event_type)s, %(external_event_id)s,
        %(headers)s, %(body)s, %(content_type)s, %(status)s, %(payload_hash)s, %(created_by)s,
        %(replay_of)s)
RETURNING id, status;

-- name: insert_delivery
INSERT INTO deliveries (event_id, destination_id, account_id, max_attempts, backoff)
VALUES (%(event_id)s, %(destination_id)s, %(account_id)s, %(max_attempts)s, %(backoff)s);

-- name: list_events
SELECT * FROM events
WHERE account_id = %(account_id)s
  AND (%(source_id)s::uuid IS NULL OR source_id = %(source_id)s::uuid)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(direction)s::text IS NULL OR direction = %(direction)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_events
SELECT count(*) AS total FROM events
WHERE account_id = %(account_id)s
  AND (%(source_id)s::uuid IS NULL OR source_id = %(source_id)s::uuid)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(direction)s::text IS NULL OR direction = %(direction)s::text);

-- name: get_event
SELECT * FROM events WHERE id = %(id)s AND account_id = %(account_id)s;

-- name: list_attempts
SELECT id, event_id, destination_id, attempt_number, started_at, finished_at,
       response_status, response_body, error_message, latency_ms, outcome
FROM delivery_attempts WHERE event_id = %(event_id)s
ORDER BY started_at, attempt_number;
