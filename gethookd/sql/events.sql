-- name: store_events
-- Many events and their deliveries in one statement (the group commit, publish and replay).
-- Event ids are chosen by the caller so deliveries can name their event. An ingest
-- (check_source) is stored only while its source is still active, so a source deleted after
-- a cache read stores nothing. A delivery is 'held' when its destination is paused, read
-- from the destination's row here (never from a cache); a destination deleted meanwhile
-- gets none.
WITH ev AS (
    INSERT INTO events (id, account_id, direction, source_id, event_type, external_event_id,
                        headers, body, content_type, status, payload_hash, created_by,
                        replay_of)
    SELECT e.id, e.account_id, e.direction, e.source_id, e.event_type, e.external_event_id,
           e.headers, e.body, e.content_type, e.status, e.payload_hash, e.created_by,
           e.replay_of
    FROM unnest(%(id)s::uuid[], %(account_id)s::uuid[], %(direction)s::text[],
                %(source_id)s::uuid[], %(event_type)s::text[], %(external_event_id)s::text[],
                %(headers)s::jsonb[], %(body)s::bytea[], %(content_type)s::text[],
                %(status)s::text[], %(payload_hash)s::text[], %(created_by)s::text[],
                %(replay_of)s::uuid[], %(check_source)s::boolean[])
         AS e(id, account_id, direction, source_id, event_type, external_event_id, headers,
              body, content_type, status, payload_hash, created_by, replay_of, check_source)
    WHERE NOT e.check_source
       OR EXISTS (SELECT 1 FROM sources s WHERE s.id = e.source_id AND s.status = 'active')
    RETURNING id, status
), dl AS (
    INSERT INTO deliveries (event_id, destination_id, account_id, max_attempts, backoff,
                            status)
    SELECT d.event_id, d.destination_id, d.account_id, d.max_attempts, d.backoff,
           CASE WHEN dst.active THEN 'pending' ELSE 'held' END
    FROM unnest(%(d_event_id)s::uuid[], %(d_destination_id)s::uuid[],
                %(d_account_id)s::uuid[], %(d_max_attempts)s::integer[], %(d_backoff)s::text[])
         AS d(event_id, destination_id, account_id, max_attempts, backoff)
    JOIN ev ON ev.id = d.event_id
    JOIN destinations dst ON dst.id = d.destination_id
    RETURNING event_id
)
SELECT ev.id, ev.status, (SELECT count(*) FROM dl WHERE dl.event_id = ev.id) AS deliveries
FROM ev;

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

-- name: outbound_by_external_id
SELECT id, status FROM events
WHERE account_id = %(account_id)s AND direction = 'outbound'
  AND external_event_id = %(external_event_id)s AND replay_of IS NULL;

-- name: mark_replayed
-- Deliveries of the original that have not started yet are superseded by the replay.
WITH cancelled AS (
    UPDATE deliveries SET status = 'cancelled', lease_token = NULL, updated_at = now()
    WHERE event_id = %(id)s AND status = 'pending'
)
UPDATE events SET status = 'replayed', next_attempt_at = NULL WHERE id = %(id)s;

-- name: lock_event_for_replay
SELECT id FROM events WHERE id = %(id)s AND account_id = %(account_id)s FOR UPDATE;

-- name: stats_by_status
SELECT status, count(*) AS count FROM events
WHERE account_id = %(account_id)s GROUP BY status ORDER BY status;

-- name: stats_daily
SELECT d::date AS date,
       count(e.id) FILTER (WHERE e.direction = 'inbound') AS inbound,
       count(e.id) FILTER (WHERE e.direction = 'outbound') AS outbound,
       count(e.id) FILTER (WHERE e.status = 'delivered') AS delivered,
       count(e.id) FILTER (WHERE e.status = 'dead_letter') AS failed
FROM generate_series((now() AT TIME ZONE 'UTC')::date - 29,
                     (now() AT TIME ZONE 'UTC')::date, interval '1 day') AS d
LEFT JOIN events e
       ON e.account_id = %(account_id)s
      AND e.created_at >= d AT TIME ZONE 'UTC'
      AND e.created_at < (d + interval '1 day') AT TIME ZONE 'UTC'
GROUP BY d ORDER BY d;

-- name: platform_stats
SELECT (SELECT count(*) FROM events) AS events_processed,
       (SELECT count(*) FROM events WHERE status = 'delivered') AS events_delivered,
       (SELECT count(*) FROM delivery_attempts) AS delivery_attempts,
       (SELECT count(*) FILTER (WHERE outcome = 'success') FROM delivery_attempts) AS successes,
       (SELECT count(*) FILTER (WHERE outcome NOT IN ('pending', 'cancelled'))
        FROM delivery_attempts) AS finished;
