-- Held deliveries go back in the claim's path in the background, in chunks.
--
-- A destination that accepts deliveries again (resumed, re-enabled, its circuit closed) had
-- its whole held backlog made pending in the statement that changed it: a resume after a
-- long pause rewrote millions of rows inside a PATCH, and a circuit closing did the same
-- inside the flusher's batch, stalling every outcome it had to record. Now that statement
-- only sets releasing_since, and the delivery processes release the held deliveries a
-- chunk at a time (release_held_chunks, gethookd/sql/queue.sql) until none is left.
--
-- The flag stays set for a grace period after the change even when nothing is held, and
-- each look is an index probe: a delivery that an ingest inserted 'held' from the
-- destination's state read just before the change, but committed after, is released too
-- instead of waiting forever.
ALTER TABLE destinations ADD COLUMN releasing_since timestamptz;

CREATE INDEX destinations_releasing ON destinations (releasing_since)
    WHERE releasing_since IS NOT NULL;

-- Any delivery held for a destination that accepts deliveries today is released.
UPDATE destinations dst SET releasing_since = now()
WHERE destination_accepts_deliveries(dst)
  AND EXISTS (SELECT 1 FROM deliveries d WHERE d.destination_id = dst.id AND d.status = 'held');
