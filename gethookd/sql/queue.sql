-- name: claim_deliveries
-- Take up to %(limit)s due deliveries (new, retry due, or abandoned by a dead worker),
-- lease them, open a pending attempt for each, and return what sending needs.
WITH due AS (
    SELECT id FROM deliveries
    WHERE (status = 'pending' AND next_attempt_at <= now())
       OR (status = 'in_flight' AND lease_expires_at <= now())
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE deliveries d
    SET status = 'in_flight',
        lease_token = gen_random_uuid(),
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        attempt_count = d.attempt_count + 1,
        updated_at = now()
    FROM due WHERE d.id = due.id
    RETURNING d.*
), abandoned AS (
    UPDATE delivery_attempts a
    SET outcome = 'cancelled', finished_at = now(),
        error_message = 'the delivery process stopped before this attempt finished; retried after its lease expired'
    FROM claimed c
    WHERE a.delivery_id = c.id AND a.outcome = 'pending'
), attempts AS (
    INSERT INTO delivery_attempts (delivery_id, event_id, destination_id, attempt_number)
    SELECT c.id, c.event_id, c.destination_id, c.attempt_count FROM claimed c
    RETURNING id, delivery_id
), delivering AS (
    UPDATE events SET status = 'delivering'
    WHERE id IN (SELECT event_id FROM claimed) AND status <> 'replayed'
)
SELECT c.id AS delivery_id, c.lease_token, c.attempt_count AS attempt_number,
       c.max_attempts, c.backoff, a.id AS attempt_id,
       e.id AS event_id, e.account_id, e.event_type, e.direction, e.body, e.content_type,
       d.id AS destination_id, d.url, d.timeout_seconds, d.signing_secret_enc,
       d.auth_config_enc, d.custom_headers
FROM claimed c
JOIN attempts a ON a.delivery_id = c.id
JOIN events e ON e.id = c.event_id
JOIN destinations d ON d.id = c.destination_id;

-- name: finish_delivery
-- Fenced by the lease token: a worker whose lease was taken over changes nothing.
UPDATE deliveries
SET status = %(status)s,
    next_attempt_at = COALESCE(%(next_attempt_at)s, next_attempt_at),
    lease_token = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = %(delivery_id)s AND lease_token = %(lease_token)s
RETURNING event_id;

-- name: finish_attempt
UPDATE delivery_attempts
SET outcome = %(outcome)s, finished_at = now(), response_status = %(response_status)s,
    response_body = %(response_body)s, error_message = %(error_message)s,
    latency_ms = %(latency_ms)s
WHERE id = %(attempt_id)s;

-- name: lock_event
SELECT id FROM events WHERE id = %(event_id)s FOR UPDATE;

-- name: refresh_event_status
-- The event's status summarises its deliveries; callers hold the event's row lock.
UPDATE events e
SET status = CASE
        WHEN e.status = 'replayed' THEN e.status
        WHEN s.total = 0 THEN 'accepted'
        WHEN s.in_flight > 0 THEN 'delivering'
        WHEN s.pending > 0 AND s.attempts > 0 THEN 'retry_scheduled'
        WHEN s.pending > 0 THEN 'queued'
        WHEN s.dead > 0 THEN 'dead_letter'
        ELSE 'delivered' END,
    final_state = CASE
        WHEN s.in_flight + s.pending > 0 OR s.total = 0 THEN NULL
        WHEN s.dead > 0 THEN 'dead_letter'
        ELSE 'delivered' END,
    next_attempt_at = s.next_at,
    attempts_count = s.attempts
FROM (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE status = 'in_flight') AS in_flight,
           count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'dead') AS dead,
           COALESCE(sum(attempt_count), 0) AS attempts,
           min(next_attempt_at) FILTER (WHERE status = 'pending') AS next_at
    FROM deliveries WHERE event_id = %(event_id)s
) s
WHERE e.id = %(event_id)s
RETURNING e.status;

-- name: notify_deliveries
NOTIFY gethookd_deliveries;

-- name: listen_deliveries
LISTEN gethookd_deliveries;
