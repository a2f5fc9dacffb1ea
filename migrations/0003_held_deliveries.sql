-- The queue's new shape: deliveries that cannot be sent now are 'held', out of the claim's path.
--
-- A delivery whose destination cannot take it (paused today; an open circuit or a disabled
-- destination later) is 'held' instead of 'pending'. The due index covers only 'pending', so
-- the claim never walks a held row, and a million of them cost the claim nothing. When the
-- destination can take deliveries again its held rows go back to 'pending', keeping their
-- next_attempt_at, so none is lost and none jumps the queue.

ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'held', 'in_flight', 'succeeded', 'dead', 'cancelled'));

CREATE INDEX deliveries_held ON deliveries (destination_id, next_attempt_at)
    WHERE status = 'held';

UPDATE deliveries d SET status = 'held', updated_at = now()
FROM destinations dst
WHERE dst.id = d.destination_id AND NOT dst.active AND d.status = 'pending';

-- Whether a destination can take deliveries now: the one place that says so. The claim parks
-- a due delivery whose destination does not as 'held', and releasing held deliveries checks it
-- again, so a second reason to hold (an open circuit, a disabled destination) only redefines
-- this function (CREATE OR REPLACE) and holds/releases through the same queries.
CREATE FUNCTION destination_accepts_deliveries(dst destinations) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT dst.active $$;
