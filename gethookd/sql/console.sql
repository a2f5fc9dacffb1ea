-- The operator console: sessions, the sign-in rate limit, and per-destination/source figures.

-- name: console_insert_session
INSERT INTO console_sessions (token_hash, account_id, expires_at)
VALUES (%(token_hash)s, %(account_id)s, now() + make_interval(secs => %(ttl)s))
RETURNING expires_at;

-- name: console_session
-- A live session's account. last_seen_at is written at most once a minute, so reading a
-- session does not cost a write per request.
WITH s AS (
    SELECT token_hash, account_id, expires_at, last_seen_at FROM console_sessions
    WHERE token_hash = %(token_hash)s AND expires_at > now()
), touched AS (
    UPDATE console_sessions c SET last_seen_at = now()
    FROM s
    WHERE c.token_hash = s.token_hash AND s.last_seen_at < now() - interval '1 minute'
)
SELECT s.account_id, s.expires_at, a.name AS account_name
FROM s JOIN accounts a ON a.id = s.account_id;

-- name: console_delete_session
DELETE FROM console_sessions WHERE token_hash = %(token_hash)s RETURNING account_id;

-- name: console_delete_expired_sessions
-- A few at a time, on each sign-in: cheap, and enough to keep up with sign-ins.
DELETE FROM console_sessions WHERE token_hash IN (
    SELECT token_hash FROM console_sessions WHERE expires_at <= now() LIMIT 100
);

-- name: console_account
SELECT id, name FROM accounts WHERE id = %(account_id)s;

-- name: console_recent_failures
-- Failed sign-ins within the window for this email and for this address, and when the
-- oldest of each leaves the window (the Retry-After once a limit is reached).
SELECT
    (SELECT count(*) FROM console_signin_failures
     WHERE email = %(email)s AND failed_at > now() - make_interval(secs => %(window)s))
        AS by_email,
    (SELECT count(*) FROM console_signin_failures
     WHERE address = %(address)s AND failed_at > now() - make_interval(secs => %(window)s))
        AS by_address,
    (SELECT EXTRACT(EPOCH FROM min(failed_at) + make_interval(secs => %(window)s) - now())
     FROM (SELECT failed_at FROM console_signin_failures
           WHERE email = %(email)s AND failed_at > now() - make_interval(secs => %(window)s)
           ORDER BY failed_at DESC LIMIT %(limit)s) last)::float AS email_clears_in,
    (SELECT EXTRACT(EPOCH FROM min(failed_at) + make_interval(secs => %(window)s) - now())
     FROM (SELECT failed_at FROM console_signin_failures
           WHERE address = %(address)s AND failed_at > now() - make_interval(secs => %(window)s)
           ORDER BY failed_at DESC LIMIT %(limit)s) last)::float AS address_clears_in;

-- name: console_record_failure
INSERT INTO console_signin_failures (email, address) VALUES (%(email)s, %(address)s);

-- name: console_delete_old_failures
DELETE FROM console_signin_failures WHERE id IN (
    SELECT id FROM console_signin_failures
    WHERE failed_at <= now() - make_interval(secs => %(window)s) LIMIT 100
);

-- name: console_destination_stats
-- Each of the account's destinations over the last %(hours)s hours: finished attempts
-- (succeeded + failed; pending and cancelled ones are not outcomes), latency percentiles of
-- those, and the latest failure. One pass over delivery_attempts_destination_started (partial:
-- outcome <> 'pending', which both lookups repeat so the planner can use it) per destination,
-- from the index alone; the latest failure's time comes from the same pass, and only that one
-- attempt is read from the table.
SELECT dst.id AS destination_id,
       a.succeeded + a.failed AS attempts, a.succeeded, a.failed,
       a.latency[1] AS latency_p50_ms, a.latency[2] AS latency_p95_ms,
       e.at AS error_at, e.status_code AS error_status_code, e.message AS error_message
FROM destinations dst
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE outcome = 'success') AS succeeded,
           count(*) FILTER (WHERE outcome NOT IN ('success', 'pending', 'cancelled')) AS failed,
           percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY latency_ms)
               FILTER (WHERE outcome NOT IN ('pending', 'cancelled')) AS latency,
           max(started_at) FILTER (WHERE outcome NOT IN ('success', 'pending', 'cancelled'))
               AS last_failed_at
    FROM delivery_attempts
    WHERE destination_id = dst.id AND outcome <> 'pending'
      AND started_at > now() - make_interval(hours => %(hours)s)
) a
LEFT JOIN LATERAL (
    SELECT COALESCE(finished_at, started_at) AS at, response_status AS status_code,
           left(COALESCE(error_message, 'HTTP ' || response_status, outcome), 500) AS message
    FROM delivery_attempts
    WHERE destination_id = dst.id AND started_at = a.last_failed_at AND outcome <> 'pending'
      AND outcome NOT IN ('success', 'cancelled')
    LIMIT 1
) e ON true
WHERE dst.account_id = %(account_id)s
ORDER BY dst.created_at, dst.id;

-- name: console_source_stats
-- Events stored for each of the account's sources over the last %(hours)s hours, replays
-- included (telling them apart would read every event from the table; this counts from
-- events_account_source alone).
SELECT s.id AS source_id,
       (SELECT count(*) FROM events e
        WHERE e.account_id = s.account_id AND e.source_id = s.id
          AND e.created_at > now() - make_interval(hours => %(hours)s)) AS events
FROM sources s
WHERE s.account_id = %(account_id)s
ORDER BY s.created_at, s.id;
