-- An attempt is written once, when it has finished, not opened by the claim and rewritten.
--
-- The claim inserted a 'pending' attempt per delivery (a row and three index entries, and
-- the foreign key's check), and the finish rewrote it with its outcome: a second row
-- version with an entry in each of its four indexes (the outcome is in the console's
-- covering index, so no update of it can be HOT). Now the claim keeps the open attempt on
-- the delivery it already rewrites (its id and when it started), and the finish, or the
-- claim that takes over an expired lease, inserts the attempt with its outcome.
-- bench/bookkeeping.py: PostgreSQL's CPU a delivery 0.81x (bench/RESULTS.md).
--
-- A delivery in flight is an attempt open: readers see the attempts through
-- gethookd_attempts, which adds one 'pending' attempt per delivery in flight, built from
-- these columns. They are left as they are when the attempt is written, and mean nothing
-- unless the delivery is in flight.
--
-- Rolling upgrade: a delivery claimed by a process from before this migration has its
-- pending attempt in delivery_attempts as before (its finish updates it; a claim that takes
-- over its expired lease closes it), and attempt_id NULL or the id of an attempt already
-- written (NOT EXISTS below).
ALTER TABLE deliveries ADD COLUMN attempt_id uuid, ADD COLUMN attempt_started_at timestamptz;

CREATE VIEW gethookd_attempts AS
SELECT id, delivery_id, event_id, destination_id, attempt_number, started_at, finished_at,
       response_status, response_body, error_message, latency_ms, outcome
FROM delivery_attempts
UNION ALL
SELECT d.attempt_id, d.id, d.event_id, d.destination_id, d.attempt_count,
       d.attempt_started_at, NULL, NULL, NULL, NULL, NULL, 'pending'
FROM deliveries d
WHERE d.status = 'in_flight' AND d.attempt_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.id = d.attempt_id);
