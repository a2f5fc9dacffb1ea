-- name: store_events
-- Many events and their deliveries in one statement (the group commit, publish and replay).
-- Event ids are chosen by the caller so deliveries can name their event. An ingest
-- (check_source) is stored only while its source is still active, so a source deleted after
-- a cache read stores nothing. A delivery is 'held' when its destination is paused, read
-- from the destination's row here (never from a cache); a destination deleted meanwhile
-- gets none.
-- Deduplication on the provider's own id (DEDUP_WINDOW): an event with a provider id
-- (keyed) is stored only if this statement takes its (source, id) in ingest_dedup: a new id,
-- or one whose window has passed (taken over in place). Repeats within one batch are folded
-- by the caller first (ON CONFLICT cannot touch one row twice in a statement).
WITH claimed AS (
    INSERT INTO ingest_dedup (source_id, dedup_key, event_id, expires_at)
    SELECT k.source_id, k.key, k.event_id,
           now() + make_interval(secs => %(dedup_window)s::float8)
    FROM json_to_recordset(%(keys)s::json) AS k(event_id uuid, source_id uuid, key text)
    WHERE EXISTS (SELECT 1 FROM sources s WHERE s.id = k.source_id AND s.status = 'active')
    ORDER BY k.source_id, k.key  -- one lock order for every batch: no deadlock
    ON CONFLICT (source_id, dedup_key) DO UPDATE
        SET event_id = EXCLUDED.event_id, expires_at = EXCLUDED.expires_at, created_at = now()
        WHERE ingest_dedup.expires_at <= now()
    RETURNING event_id
), ev AS (
    INSERT INTO events (id, account_id, direction, source_id, event_type, external_event_id,
                        headers, body, content_type, status, payload_hash, created_by,
                        replay_of)
    SELECT e.id, e.account_id, e.direction, e.source_id, e.event_type, e.external_event_id,
           e.headers, decode(e.body, 'base64'), e.content_type, e.status, e.payload_hash,
           e.created_by, e.replay_of
    FROM json_to_recordset(%(events)s::json)
         AS e(id uuid, account_id uuid, direction text, source_id uuid, event_type text,
              external_event_id text, headers jsonb, body text, content_type text, status text,
              payload_hash text, created_by text, replay_of uuid, check_source boolean,
              keyed boolean)
    WHERE (NOT e.check_source
           OR EXISTS (SELECT 1 FROM sources s WHERE s.id = e.source_id AND s.status = 'active'))
      AND (NOT e.keyed OR e.id IN (SELECT event_id FROM claimed))
    RETURNING id, status
), dl AS (
    INSERT INTO deliveries (event_id, destination_id, account_id, max_attempts, backoff,
                            status)
    SELECT d.event_id, d.destination_id, d.account_id, d.max_attempts, d.backoff,
           CASE WHEN destination_accepts_deliveries(dst) THEN 'pending' ELSE 'held' END
    FROM json_to_recordset(%(deliveries)s::json)
         AS d(event_id uuid, destination_id uuid, account_id uuid, max_attempts integer,
              backoff text)
    JOIN ev ON ev.id = d.event_id
    JOIN destinations dst ON dst.id = d.destination_id
    RETURNING event_id
)
SELECT ev.id, ev.status, COALESCE(n.deliveries, 0) AS deliveries
FROM ev LEFT JOIN (SELECT event_id, count(*) AS deliveries FROM dl GROUP BY event_id) n
    ON n.event_id = ev.id;

-- name: dedup_holders
-- Who holds the ids a batch could not take: the first event (what a duplicate answers).
SELECT d.source_id, d.dedup_key, d.event_id, gethookd_event_status(e.id, e.status) AS status
FROM unnest(%(k_source_id)s::uuid[], %(k_key)s::text[]) AS k(source_id, dedup_key)
JOIN ingest_dedup d ON d.source_id = k.source_id AND d.dedup_key = k.dedup_key
LEFT JOIN events e ON e.id = d.event_id;

-- name: get_event
-- The status and attempts as they are now: 'delivering' and the attempts in flight are read
-- from the deliveries, not written by the claim (migration 0015); event_view shows them.
SELECT e.*, gethookd_event_status(e.id, e.status) AS live_status,
       gethookd_event_attempts(e.id, e.attempts_count) AS live_attempts
FROM events e WHERE id = %(id)s AND account_id = %(account_id)s;

-- name: list_attempts
-- The attempts written, and one pending attempt per delivery in flight (migration 0016).
SELECT id, event_id, destination_id, attempt_number, started_at, finished_at,
       response_status, response_body, error_message, latency_ms, outcome
FROM gethookd_attempts WHERE event_id = %(event_id)s
ORDER BY started_at, attempt_number;

-- name: outbound_by_external_id
SELECT e.id, gethookd_event_status(e.id, e.status) AS status FROM events e
WHERE account_id = %(account_id)s AND direction = 'outbound'
  AND external_event_id = %(external_event_id)s AND replay_of IS NULL;

-- name: mark_replayed
-- Deliveries of the originals that have not started yet (due or held) are superseded by
-- their replays.
WITH cancelled AS (
    UPDATE deliveries SET status = 'cancelled', lease_token = NULL, updated_at = now()
    WHERE event_id = ANY(%(ids)s::uuid[]) AND status IN ('pending', 'held')
)
UPDATE events SET status = 'replayed', next_attempt_at = NULL
WHERE id = ANY(%(ids)s::uuid[]);

-- name: lock_events_for_replay
-- In id order, the order the delivery flush locks events in: no deadlock between them.
SELECT * FROM events WHERE id = ANY(%(ids)s::uuid[]) AND account_id = %(account_id)s
ORDER BY id FOR UPDATE;

-- name: stats_by_status
-- Statuses as gethookd_event_status reads them: the counts as written, with the account's
-- events that have a delivery in flight (a few, found from deliveries_leased) moved to
-- 'delivering'. Nothing is looked up per event counted.
WITH stored AS (
    SELECT status, count(*) AS n FROM events
    WHERE account_id = %(account_id)s GROUP BY status
), moved AS (
    SELECT e.status, count(*) AS n FROM events e
    WHERE e.id IN (SELECT d.event_id FROM deliveries d
                   WHERE d.status = 'in_flight' AND d.account_id = %(account_id)s)
      AND e.account_id = %(account_id)s AND e.status NOT IN ('replayed', 'delivering')
    GROUP BY e.status
)
SELECT status, sum(n)::bigint AS count FROM (
    SELECT s.status, s.n - COALESCE(m.n, 0) AS n FROM stored s LEFT JOIN moved m USING (status)
    UNION ALL
    SELECT 'delivering', n FROM moved
) counts GROUP BY status HAVING sum(n) > 0 ORDER BY status;

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
-- The attempts in flight are counted too (migration 0016).
SELECT (SELECT count(*) FROM events) AS events_processed,
       (SELECT count(*) FROM events WHERE status = 'delivered') AS events_delivered,
       (SELECT count(*) FROM gethookd_attempts) AS delivery_attempts,
       (SELECT count(*) FILTER (WHERE outcome = 'success') FROM delivery_attempts) AS successes,
       (SELECT count(*) FILTER (WHERE outcome NOT IN ('pending', 'cancelled'))
        FROM delivery_attempts) AS finished;
