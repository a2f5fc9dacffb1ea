-- Waiting deliveries leave the claim's path in the background when a destination is paused.
--
-- A pause moved the destination's whole pending backlog to 'held' inside the PATCH: about
-- 12 s for a million deliveries, a request longer than many clients wait. Now the PATCH
-- only sets holding_since, and the delivery processes hold the pending deliveries a chunk
-- at a time (hold_waiting_chunks, gethookd/sql/queue.sql), as they release them on a
-- resume (migration 0010). holding_after is where the next chunk starts in the due index
-- (next_attempt_at): each chunk walks on from the last one instead of from the start.
-- Until a delivery is held, the claim parks it if it comes due (it already did this for
-- whatever slipped past a hold), so none is ever sent to a paused destination.
ALTER TABLE destinations ADD COLUMN holding_since timestamptz;
ALTER TABLE destinations ADD COLUMN holding_after timestamptz;

CREATE INDEX destinations_holding ON destinations (holding_since)
    WHERE holding_since IS NOT NULL;
