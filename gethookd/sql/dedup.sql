-- Inbound deduplication (gethookd/services/dedup.py). Each query works on one key, so a
-- batch writer can run them per row inside its own transaction. A batch that claims several
-- keys in one multi-row INSERT must first fold copies of one key within the batch (Postgres
-- refuses ON CONFLICT DO UPDATE touching one row twice in a statement).

-- name: dedup_claim
-- Take the key for the event about to be stored: a row comes back when it was free. A
-- concurrent claim of the same key waits for the holder's transaction: if that commits, the
-- key is taken; if it rolls back, this insert goes ahead. DO NOTHING locks no existing row,
-- so a burst of repeats of one id does not queue up behind each other.
INSERT INTO ingest_dedup (source_id, dedup_key, expires_at)
VALUES (%(source_id)s, %(dedup_key)s, now() + make_interval(secs => %(window)s))
ON CONFLICT (source_id, dedup_key) DO NOTHING
RETURNING dedup_key;

-- name: dedup_find
-- Who holds a key that could not be claimed: the first event (what a duplicate answers), or
-- an expired row. A new statement, so under READ COMMITTED it sees a claim that a concurrent
-- copy just committed. No row: it was deleted meanwhile (expired); claim again.
SELECT d.event_id AS id, e.status, d.expires_at <= now() AS expired
FROM ingest_dedup d
LEFT JOIN events e ON e.id = d.event_id
WHERE d.source_id = %(source_id)s AND d.dedup_key = %(dedup_key)s;

-- name: dedup_take_expired
-- Take over an expired key in place. Of concurrent takers one updates; the others re-check
-- the condition on the row it wrote, find it live, and get no row back.
UPDATE ingest_dedup
SET event_id = NULL, expires_at = now() + make_interval(secs => %(window)s), created_at = now()
WHERE source_id = %(source_id)s AND dedup_key = %(dedup_key)s AND expires_at <= now()
RETURNING dedup_key;

-- name: dedup_record_event
-- The event the claim stored, for the duplicates that follow (same transaction as the claim).
UPDATE ingest_dedup SET event_id = %(event_id)s
WHERE source_id = %(source_id)s AND dedup_key = %(dedup_key)s;

-- name: dedup_first_event
-- What a duplicate answers: the event stored under the key (a new statement, so under READ
-- COMMITTED it sees the claim a concurrent copy just committed).
SELECT d.event_id AS id, e.status
FROM ingest_dedup d
LEFT JOIN events e ON e.id = d.event_id
WHERE d.source_id = %(source_id)s AND d.dedup_key = %(dedup_key)s;

-- name: dedup_delete_expired
-- A bounded batch, skipping rows another transaction holds, so it never waits or grows long.
DELETE FROM ingest_dedup
WHERE ctid IN (
    SELECT ctid FROM ingest_dedup
    WHERE expires_at < now()
    ORDER BY expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
);
