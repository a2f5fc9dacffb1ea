-- The delivery queue. Lock order everywhere: the event row, then its deliveries, then
-- their attempts (replay and event deletion take the same order). The claim never waits
-- for a lock at all (SKIP LOCKED on both the delivery and its event), so it cannot take
-- part in a deadlock.

-- name: claim_deliveries
-- Take up to %(limit)s deliveries whose worker died (lease expired) or that are due, lease
-- them, open a pending attempt for each, and return what sending needs.
-- Each branch is one ordered scan of its partial index that stops after %(limit)s rows,
-- so a claim costs the same with a backlog of a million as with ten.
-- A destination switched off (active = false) is paused: its deliveries wait, unclaimed.
WITH expired AS (
    SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id
    JOIN destinations dst ON dst.id = d.destination_id AND dst.active
    WHERE d.status = 'in_flight' AND d.lease_expires_at <= now()
    ORDER BY d.lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE OF d, e SKIP LOCKED
), due AS (
    SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id
    JOIN destinations dst ON dst.id = d.destination_id AND dst.active
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE OF d, e SKIP LOCKED
), picked AS (
    -- CTE scans are pulled lazily: `due` locks only the rows this LIMIT still needs.
    (SELECT id FROM expired) UNION ALL (SELECT id FROM due) LIMIT %(limit)s
), claimed AS (
    UPDATE deliveries d
    SET status = 'in_flight',
        lease_token = gen_random_uuid(),
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s::float8),
        attempt_count = d.attempt_count + 1,
        updated_at = now()
    FROM picked WHERE d.id = picked.id
    RETURNING d.id, d.event_id, d.destination_id, d.lease_token, d.attempt_count,
              d.max_attempts, d.backoff
), abandoned AS (
    UPDATE delivery_attempts a
    SET outcome = 'cancelled', finished_at = now(),
        error_message = 'the delivery process stopped before this attempt finished; '
                        'retried after its lease expired'
    FROM claimed c
    WHERE a.delivery_id = c.id AND a.outcome = 'pending'
), attempts AS (
    INSERT INTO delivery_attempts (delivery_id, event_id, destination_id, attempt_number)
    SELECT c.id, c.event_id, c.destination_id, c.attempt_count FROM claimed c
    RETURNING id, delivery_id
), delivering AS (
    -- attempts_count is the sum of the deliveries' attempt_count, as refresh_event_status
    -- computes it; the claim adds the attempts it opens.
    UPDATE events e
    SET status = CASE WHEN e.status = 'replayed' THEN e.status ELSE 'delivering' END,
        attempts_count = e.attempts_count + n.opened
    FROM (SELECT event_id, count(*) AS opened FROM claimed GROUP BY event_id) n
    WHERE e.id = n.event_id
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
-- Two statements, sent together. The first locks the event; the second therefore runs on a
-- snapshot that already sees every commit of whoever held that lock before us, so the
-- summary it writes cannot lose a sibling delivery's update.
-- Fenced by the lease token: a worker whose lease was taken over changes nothing (no row
-- comes back). A retry of an event replayed meanwhile is cancelled instead.
SELECT 1 FROM events WHERE id = %(event_id)s FOR UPDATE;
WITH fenced AS (
    UPDATE deliveries d
    SET status = CASE
            WHEN %(status)s = 'pending'
                 AND (SELECT e.status FROM events e WHERE e.id = d.event_id) = 'replayed'
            THEN 'cancelled' ELSE %(status)s END,
        next_attempt_at = CASE WHEN %(status)s = 'pending'
            THEN now() + make_interval(secs => %(retry_in)s::float8)
            ELSE d.next_attempt_at END,
        lease_token = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE d.id = %(delivery_id)s AND d.lease_token = %(lease_token)s AND d.status = 'in_flight'
    RETURNING d.status, d.attempt_count, d.next_attempt_at
), attempt AS (
    UPDATE delivery_attempts
    SET outcome = %(outcome)s, finished_at = now(), response_status = %(response_status)s,
        response_body = %(response_body)s, error_message = %(error_message)s,
        latency_ms = %(latency_ms)s
    WHERE id = %(attempt_id)s AND EXISTS (SELECT 1 FROM fenced)
), siblings AS (
    -- The event's deliveries as this statement leaves them: the others as committed, this
    -- one as just updated (a statement does not see its own CTEs' updates).
    SELECT status, attempt_count, next_attempt_at FROM deliveries
    WHERE event_id = %(event_id)s AND id <> %(delivery_id)s
    UNION ALL
    SELECT status, attempt_count, next_attempt_at FROM fenced
), summary AS (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE status = 'in_flight') AS in_flight,
           count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'dead') AS dead,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           COALESCE(sum(attempt_count), 0) AS attempts,
           min(next_attempt_at) FILTER (WHERE status = 'pending') AS next_at
    FROM siblings
), refreshed AS (
    -- The event's status summarises its deliveries.
    UPDATE events e
    SET status = CASE
            WHEN e.status = 'replayed' THEN e.status
            WHEN s.in_flight > 0 THEN 'delivering'
            WHEN s.pending > 0 AND s.attempts > 0 THEN 'retry_scheduled'
            WHEN s.pending > 0 THEN 'queued'
            WHEN s.dead > 0 THEN 'dead_letter'
            ELSE 'delivered' END,
        final_state = CASE
            WHEN s.in_flight + s.pending > 0 THEN NULL
            WHEN s.dead > 0 THEN 'dead_letter'
            WHEN s.succeeded = s.total THEN 'delivered'
            ELSE NULL END,
        next_attempt_at = s.next_at,
        attempts_count = s.attempts
    FROM summary s
    WHERE e.id = %(event_id)s AND EXISTS (SELECT 1 FROM fenced)
)
SELECT status FROM fenced;

-- name: notify_deliveries
NOTIFY gethookd_deliveries;

-- name: listen_deliveries
LISTEN gethookd_deliveries;
