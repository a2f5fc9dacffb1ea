-- The event filter (gethookd/services/event_filter.py), shared by the event lists and bulk
-- replay. Every filter_* query includes the one WHERE block, event_filter_where (gethookd/db.py
-- puts it in place of `-- include:` when the queries load).
-- A parameter left NULL is no constraint; psycopg2 sends values inline, so PostgreSQL folds
-- the NULL tests away and plans each page for the filters actually given.
-- Order: newest first for lists, oldest first for replay; both keyset on (created_at, id),
-- which events_account_created (account_id, created_at DESC, id DESC) walks either way.

-- name: event_filter_where
  AND (%(source_id)s::uuid IS NULL OR e.source_id = %(source_id)s::uuid)
  -- The status as gethookd_event_status reads it (migration 0015): 'delivering' while a
  -- delivery is in flight. The deliveries in flight are gathered once per query (a hashed
  -- set, from the small deliveries_leased index), not looked up per event scanned.
  AND (%(status)s::text IS NULL
       OR (e.status = %(status)s::text
           AND (e.status = 'replayed'
                OR e.id NOT IN (SELECT d.event_id FROM deliveries d WHERE d.status = 'in_flight')))
       OR (%(status)s::text = 'delivering' AND e.status <> 'replayed'
           AND e.id IN (SELECT d.event_id FROM deliveries d WHERE d.status = 'in_flight')))
  AND (%(direction)s::text IS NULL OR e.direction = %(direction)s::text)
  AND (%(event_type)s::text IS NULL OR e.event_type = %(event_type)s::text)
  AND (%(since)s::timestamptz IS NULL OR e.created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR e.created_at < %(until)s::timestamptz)
  AND (%(destination_id)s::uuid IS NULL
       OR EXISTS (SELECT 1 FROM deliveries d
                  WHERE d.event_id = e.id AND d.destination_id = %(destination_id)s::uuid))

-- name: filter_page
-- One page, newest first: after a cursor (before_at, before_id) or at an offset. The status
-- and attempts as they are now (see events.sql, get_event).
SELECT e.*, gethookd_event_status(e.id, e.status) AS live_status,
       gethookd_event_attempts(e.id, e.attempts_count) AS live_attempts
FROM events e
WHERE e.account_id = %(account_id)s
  -- include: event_filter_where
  AND (%(before_at)s::timestamptz IS NULL
       OR (e.created_at, e.id) < (%(before_at)s::timestamptz, %(before_id)s::uuid))
ORDER BY e.created_at DESC, e.id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: filter_count
SELECT count(*) AS total FROM events e
WHERE e.account_id = %(account_id)s
  -- include: event_filter_where
  AND e.created_at <= COALESCE(%(upto)s::timestamptz, 'infinity');

-- name: filter_batch
-- The next originals of a replay job, oldest first, after its cursor and no later than its
-- upto (the job's creation: the replays it makes are never picked up by itself).
SELECT e.id, e.created_at FROM events e
WHERE e.account_id = %(account_id)s
  -- include: event_filter_where
  AND e.created_at <= %(upto)s::timestamptz
  AND (%(after_at)s::timestamptz IS NULL
       OR (e.created_at, e.id) > (%(after_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY e.created_at, e.id
LIMIT %(limit)s;
