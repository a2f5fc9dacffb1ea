-- An event's status while one of its deliveries is in flight is read, not written.
--
-- The claim rewrote every claimed event (status 'delivering', attempts_count plus the
-- attempts it opened): the claim's costliest step, and a row version of each event more
-- on the hot path, which the finish rewrote again moments later. The claim now leaves the
-- event as it is; readers see it as it was written before, through these two functions:
--   - 'delivering' while any of its deliveries is in flight, unless it was replayed (as
--     the claim wrote it);
--   - attempts_count counting the attempts in flight (the sum of its deliveries'
--     attempt_count, as the finish writes it), never less than what was written.
-- The finish writes both as before, from all of the event's deliveries. The event filter
-- (sql/event_filter.sql) and the stats by status (sql/events.sql) state the same rule over
-- the set of deliveries in flight, gathered once per query instead of a call per event:
-- a change to the rule goes to all three.
-- bench/bookkeeping.py: PostgreSQL's CPU a delivery 0.88-0.92x (bench/RESULTS.md).
--
-- They take the event's columns, not its row: a whole row (body and headers included) would
-- be built for each call.
CREATE FUNCTION gethookd_event_status(event_id uuid, status text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN $2 <> 'replayed' AND EXISTS (
            SELECT 1 FROM deliveries d WHERE d.event_id = $1 AND d.status = 'in_flight')
        THEN 'delivering'
        ELSE $2 END
$$;

CREATE FUNCTION gethookd_event_attempts(event_id uuid, attempts_count integer) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT GREATEST($2,
                    (SELECT sum(d.attempt_count)::integer FROM deliveries d
                     WHERE d.event_id = $1))
$$;
