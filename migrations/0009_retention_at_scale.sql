-- Retention at a million rows: deleting events must cost an index probe per row, never a
-- scan of a whole table.
--
-- A deleted delivery cascades to its attempts through delivery_attempts.delivery_id, a
-- query per deleted delivery that the partial index (outcome = 'pending') cannot answer:
-- each one scanned every attempt (a purge of a million events ran at ~10 events/s). One
-- full index on delivery_id serves both the cascade and the claim's pending lookup (a
-- delivery has at most max_attempts attempts).
CREATE INDEX delivery_attempts_delivery_all ON delivery_attempts (delivery_id);
DROP INDEX delivery_attempts_delivery;
ALTER INDEX delivery_attempts_delivery_all RENAME TO delivery_attempts_delivery;

-- events.replay_of links a replay to its original. Its foreign key set the link to NULL
-- when the original was deleted: a scan of events per deleted event (no index on
-- replay_of), and an outbound original replayed twice could not be deleted at all (its two
-- replays, both with the original's external_event_id and now replay_of NULL, collided in
-- events_outbound_external_id). Like ingest_dedup.event_id, the link now outlives the
-- original: a replay keeps naming the event it replayed, which may since have expired.
ALTER TABLE events DROP CONSTRAINT events_replay_of_fkey;
