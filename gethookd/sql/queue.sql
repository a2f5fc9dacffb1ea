-- The delivery queue. Lock order everywhere: the event row, then its deliveries, then
-- their attempts (replay and event deletion take the same order; a batch of outcomes locks
-- its events in id order). The claim never waits for a lock at all (SKIP LOCKED on the
-- delivery, its event and, to park, its destination), so it cannot take part in a deadlock.
-- Statuses: 'pending' waits in the due index; 'held' waits outside it, because its
-- destination cannot take it now (see destination_accepts_deliveries, migration 0003).

-- name: claim_deliveries
-- Take up to %(limit)s deliveries whose worker died (lease expired) or that are due, lease
-- them, open a pending attempt for each, and return what sending needs: one statement.
-- Each branch is one ordered scan of its partial index that stops after %(limit)s rows,
-- so a claim costs the same with a backlog of a million as with ten. Deliveries that
-- cannot be sent now are 'held', outside the due index: the claim never walks them.
-- A due row whose destination does not accept deliveries (it was paused just as the row
-- became pending) is parked as 'held' here rather than skipped, so it is walked once.
-- The park re-reads the destination under a share lock (SKIP LOCKED: a pause or resume
-- in progress is never waited for), so it never parks against a resume that committed.
-- Every row comes back with `parked`, the count parked; a claim that parked but took
-- nothing comes back as one row of NULLs and that count.
WITH expired AS (
    SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id
    JOIN destinations dst ON dst.id = d.destination_id
    WHERE d.status = 'in_flight' AND d.lease_expires_at <= now()
      AND destination_accepts_deliveries(dst)
    ORDER BY d.lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE OF d, e SKIP LOCKED
), due AS (
    SELECT d.id, destination_accepts_deliveries(dst) AS accepts
    FROM deliveries d JOIN events e ON e.id = d.event_id
    JOIN destinations dst ON dst.id = d.destination_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE OF d, e SKIP LOCKED
), parked AS (
    UPDATE deliveries d SET status = 'held', updated_at = now()
    FROM due
    WHERE d.id = due.id AND NOT due.accepts
      AND EXISTS (SELECT 1 FROM destinations x
                  WHERE x.id = d.destination_id AND NOT destination_accepts_deliveries(x)
                  FOR SHARE SKIP LOCKED)
    RETURNING d.id
), picked AS (
    (SELECT id FROM expired) UNION ALL (SELECT id FROM due WHERE accepts) LIMIT %(limit)s
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
    -- attempts_count is the sum of the deliveries' attempt_count, as finish_deliveries
    -- computes it; the claim adds the attempts it opens.
    UPDATE events e
    SET status = CASE WHEN e.status = 'replayed' THEN e.status ELSE 'delivering' END,
        attempts_count = e.attempts_count + n.opened
    FROM (SELECT event_id, count(*) AS opened FROM claimed GROUP BY event_id) n
    WHERE e.id = n.event_id
), jobs AS (
    SELECT c.id AS delivery_id, c.lease_token, c.attempt_count AS attempt_number,
           c.max_attempts, c.backoff, a.id AS attempt_id,
           e.id AS event_id, e.account_id, e.event_type, e.direction, e.body, e.content_type,
           d.id AS destination_id, d.url, d.timeout_seconds, d.signing_secret_enc,
           d.auth_config_enc, d.custom_headers
    FROM claimed c
    JOIN attempts a ON a.delivery_id = c.id
    JOIN events e ON e.id = c.event_id
    JOIN destinations d ON d.id = c.destination_id
)
SELECT p.parked, jobs.* FROM (SELECT count(*) AS parked FROM parked) p
LEFT JOIN jobs ON true
WHERE jobs.delivery_id IS NOT NULL OR p.parked > 0;

-- name: finish_deliveries
-- Record a batch of finished attempts: two statements, sent together in one transaction.
-- The first locks the batch's events, in id order (every batch takes them in the same
-- order, so two flushers cannot deadlock; the claim never waits for a lock). The second
-- therefore runs on a snapshot that already sees every commit of whoever held those locks
-- before us, so the summaries it writes cannot lose a sibling delivery's update.
-- Fenced by the lease token: a row whose lease was taken over changes nothing, its
-- attempt neither, and does not come back. A retry of an event replayed meanwhile is
-- cancelled instead. Each delivery is looked up by primary key.
SELECT 1 FROM events WHERE id = ANY(%(event_ids)s::uuid[]) ORDER BY id FOR UPDATE;
WITH input AS (
    SELECT * FROM unnest(%(delivery_ids)s::uuid[], %(lease_tokens)s::uuid[],
                         %(attempt_ids)s::uuid[], %(statuses)s::text[],
                         %(retry_ins)s::float8[], %(outcomes)s::text[],
                         %(response_statuses)s::int[], %(response_bodies)s::text[],
                         %(error_messages)s::text[], %(latencies)s::int[])
        AS i(delivery_id, lease_token, attempt_id, status, retry_in, outcome,
             response_status, response_body, error_message, latency_ms)
), fenced AS (
    UPDATE deliveries d
    SET status = CASE
            WHEN i.status = 'pending'
                 AND (SELECT e.status FROM events e WHERE e.id = d.event_id) = 'replayed'
            THEN 'cancelled' ELSE i.status END,
        next_attempt_at = CASE WHEN i.status = 'pending'
            THEN now() + make_interval(secs => i.retry_in)
            ELSE d.next_attempt_at END,
        lease_token = NULL, lease_expires_at = NULL, updated_at = now()
    FROM input i
    WHERE d.id = i.delivery_id AND d.lease_token = i.lease_token AND d.status = 'in_flight'
    RETURNING d.id, d.event_id, d.status, d.attempt_count, d.next_attempt_at, i.attempt_id
), attempt AS (
    UPDATE delivery_attempts a
    SET outcome = i.outcome, finished_at = now(), response_status = i.response_status,
        response_body = i.response_body, error_message = i.error_message,
        latency_ms = i.latency_ms
    FROM input i JOIN fenced f ON f.attempt_id = i.attempt_id
    WHERE a.id = i.attempt_id
), siblings AS (
    -- The events' deliveries as this statement leaves them: the others as committed, the
    -- batch's as just updated (a statement does not see its own CTEs' updates).
    SELECT d.event_id, d.status, d.attempt_count, d.next_attempt_at FROM deliveries d
    WHERE d.event_id IN (SELECT event_id FROM fenced)
      AND d.id NOT IN (SELECT id FROM fenced)
    UNION ALL
    SELECT event_id, status, attempt_count, next_attempt_at FROM fenced
), summary AS (
    -- 'held' (its destination cannot take it now) is waiting, as 'pending' is.
    SELECT event_id,
           count(*) AS total,
           count(*) FILTER (WHERE status = 'in_flight') AS in_flight,
           count(*) FILTER (WHERE status IN ('pending', 'held')) AS waiting,
           count(*) FILTER (WHERE status = 'dead') AS dead,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           COALESCE(sum(attempt_count), 0) AS attempts,
           min(next_attempt_at) FILTER (WHERE status IN ('pending', 'held')) AS next_at
    FROM siblings GROUP BY event_id
), refreshed AS (
    -- The event's status summarises its deliveries.
    UPDATE events e
    SET status = CASE
            WHEN e.status = 'replayed' THEN e.status
            WHEN s.in_flight > 0 THEN 'delivering'
            WHEN s.waiting > 0 AND s.attempts > 0 THEN 'retry_scheduled'
            WHEN s.waiting > 0 THEN 'queued'
            WHEN s.dead > 0 THEN 'dead_letter'
            ELSE 'delivered' END,
        final_state = CASE
            WHEN s.in_flight + s.waiting > 0 THEN NULL
            WHEN s.dead > 0 THEN 'dead_letter'
            WHEN s.succeeded = s.total THEN 'delivered'
            ELSE NULL END,
        next_attempt_at = s.next_at,
        attempts_count = s.attempts
    FROM summary s
    WHERE e.id = s.event_id
)
SELECT id AS delivery_id, status FROM fenced;

-- name: hold_destination_deliveries
-- A destination stopped accepting deliveries (paused): its waiting deliveries leave the
-- claim's path. Runs in the transaction that changed the destination, after that change.
UPDATE deliveries SET status = 'held', updated_at = now()
WHERE destination_id = %(destination_id)s AND status = 'pending';

-- name: release_held_deliveries
-- A destination accepts deliveries again: its held deliveries are pending again, keeping
-- their next_attempt_at (none is lost, none jumps the queue). Only if no reason to hold
-- remains; runs in the transaction that changed the destination, after that change.
UPDATE deliveries d SET status = 'pending', updated_at = now()
FROM destinations dst
WHERE dst.id = %(destination_id)s AND destination_accepts_deliveries(dst)
  AND d.destination_id = dst.id AND d.status = 'held';

-- name: notify_deliveries
NOTIFY gethookd_deliveries;

-- name: listen_deliveries
LISTEN gethookd_deliveries;
