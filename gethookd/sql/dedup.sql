-- Inbound deduplication: the claim itself is part of `store_events` (events.sql), batched.
-- Expired ids are taken over in place there; this deletes them in small batches.

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
