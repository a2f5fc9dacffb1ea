-- The delivery queue. Lock order everywhere: the event row, then its deliveries, then
-- their attempts (replay and event deletion take the same order; a batch of outcomes locks
-- its events in id order). The claim never waits for a lock at all (SKIP LOCKED on the
-- delivery, its event and, to park, its destination), so it cannot take part in a deadlock.
-- Statuses: 'pending' waits in the due index; 'held' waits outside it, because its
-- destination cannot take it now (see destination_accepts_deliveries, migration 0003).
--
-- Plans that cannot go wrong. The claim and the finish run prepared, on generic plans made
-- from the statistics of the moment, and kept for a while (db.REPREPARE_FIRST up to
-- REPREPARE_AFTER). Made while the tables were analyzed empty, a plan takes each for one
-- row, and is as happy to read all of it as to look one row up: a claim of 10 read every
-- attempt, delivery and event once the tables had grown (360,779 buffers; a claim's cost
-- grew with the history in bench/delivery.py). So every table is reached in one of three
-- ways, whatever the planner believes:
--   - `id = ANY(ARRAY(...))` alone, no join: the keys are the index's search keys;
--   - a scalar subquery per row (`(SELECT ... WHERE dst.id = c.destination_id)`);
--   - a LATERAL subquery per row of a CTE, kept apart by OFFSET 0 (or its FOR UPDATE),
--     so that the CTE drives and the table is looked up by the row's key.
-- An UPDATE joined to its batch also says `id = ANY(the batch's keys)`, so that its scan
-- is bounded by them, and nested loops are ruled out (queue.PLAN_BY_KEY), so that it is
-- read once and hashed or merged with the batch, not once per row of it.

-- name: claim_deliveries
-- Take up to %(limit)s deliveries whose worker died (lease expired) or that are due, lease
-- them, open an attempt for each, and return what sending needs: one statement. The open
-- attempt is kept on the delivery (attempt_id, attempt_started_at) and written to
-- delivery_attempts once it has finished (migration 0016); an expired lease's attempt is
-- written here, as cancelled.
-- Fairness: the calling process passes how many deliveries of each destination it has in
-- flight (%(busy_destinations)s, %(busy_counts)s) and the per-destination cap %(cap)s; no
-- destination gets more than its remaining allowance. Candidates are locked as they are
-- scanned (SKIP LOCKED: two processes claiming at once take different rows instead of
-- the same first ones, one of them coming back short), counted per destination (the
-- window function, which FOR UPDATE cannot share a SELECT with), then their events are
-- locked SKIP LOCKED and each row re-checked. Each candidate branch is one
-- ordered scan of its partial index that stops after %(scan)s rows passing its filter;
-- destinations already at their cap are filtered out in that scan, so it walks past their
-- due rows (index entries) but never returns them. Deliveries that cannot be sent now are
-- 'held', outside the due index: the claim never walks them.
-- A due row whose destination does not accept deliveries (it was paused, or its circuit
-- opened, just as the row became pending) is parked as 'held' here rather than skipped, so
-- it is walked once. The park re-reads the destination under a share lock (SKIP LOCKED: a
-- change in progress is never waited for), so it never parks against a resume that
-- committed. Every row comes back with `parked`, the count parked, and `trimmed`, the
-- count of candidates left for lack of allowance (more may be due), and `lost`, the count
-- chosen but not claimed (its event was locked by a flusher or a replay: more is due); a
-- claim that took nothing comes back as one row of NULLs and those counts, or no row if
-- all three are 0. Every table is read by key (see "Plans that cannot go wrong" above).
-- The event is locked but not written: while a delivery is in flight its event reads as
-- 'delivering', with the attempt counted (gethookd_event_status and
-- gethookd_event_attempts, migration 0015); the finish writes its summary.
WITH busy AS (
    SELECT * FROM unnest(%(busy_destinations)s::uuid[], %(busy_counts)s::int[])
        AS b(destination_id, n)
), expired_c AS (
    SELECT d.id, d.event_id, d.destination_id, d.lease_expires_at AS at, 0 AS branch
    FROM deliveries d
    WHERE d.status = 'in_flight' AND d.lease_expires_at <= now()
      AND (SELECT delivery_may_be_sent(dst, d.id) FROM destinations dst
           WHERE dst.id = d.destination_id)
      AND (%(uncapped)s::boolean OR d.destination_id <> ALL(%(capped)s::uuid[]))
    ORDER BY d.lease_expires_at
    LIMIT %(scan)s
    FOR UPDATE SKIP LOCKED
), due_c AS (
    SELECT d.id, d.event_id, d.destination_id, d.next_attempt_at AS at, 1 AS branch
    FROM deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
      AND (%(uncapped)s::boolean OR d.destination_id <> ALL(%(capped)s::uuid[]))
    ORDER BY d.next_attempt_at
    LIMIT %(scan)s
    FOR UPDATE SKIP LOCKED
), cand AS (
    -- A destination deleted meanwhile took its deliveries with it: accepts is NULL.
    SELECT c.*, (SELECT delivery_may_be_sent(dst, c.id) FROM destinations dst
                 WHERE dst.id = c.destination_id) AS accepts
    FROM (SELECT * FROM expired_c UNION ALL SELECT * FROM due_c) c
), ranked AS (
    SELECT c.id, c.event_id, c.branch, c.at,
           row_number() OVER (PARTITION BY c.destination_id ORDER BY c.branch, c.at) AS rn,
           %(cap)s - COALESCE(b.n, 0) AS allowance
    FROM cand c LEFT JOIN busy b ON b.destination_id = c.destination_id
    WHERE c.accepts
), chosen AS (
    SELECT id, event_id, row_number() OVER (ORDER BY branch, at) AS ord
    FROM ranked WHERE rn <= allowance ORDER BY branch, at LIMIT %(limit)s
), picked AS (
    -- The events locked now; each row re-checked on its latest version (the candidate
    -- lock already waited for nobody, so this is the row as it is).
    SELECT x.*, ch.ord
    FROM chosen ch CROSS JOIN LATERAL (
        SELECT d.id, d.status = 'in_flight' AS expired, d.event_id, d.destination_id,
               d.attempt_count, d.attempt_id, d.attempt_started_at
        FROM deliveries d JOIN events e ON e.id = d.event_id
        WHERE d.id = ch.id AND e.id = ch.event_id
          AND ((d.status = 'pending' AND d.next_attempt_at <= now())
               OR (d.status = 'in_flight' AND d.lease_expires_at <= now()))
        FOR UPDATE OF d, e SKIP LOCKED
    ) x
), parked AS (
    -- due_c locked these rows as pending (on their latest version), and claimed takes
    -- none of them (it takes only rows that may be sent), so they are pending still.
    UPDATE deliveries d SET status = 'held', updated_at = now()
    WHERE d.id = ANY(ARRAY(SELECT c.id FROM cand c WHERE NOT c.accepts AND c.branch = 1))
      AND EXISTS (SELECT 1 FROM destinations x
                  WHERE x.id = d.destination_id AND NOT delivery_may_be_sent(x, d.id)
                  FOR SHARE SKIP LOCKED)
    RETURNING d.id
), claimed AS (
    UPDATE deliveries d
    SET status = 'in_flight',
        lease_token = gen_random_uuid(),
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s::float8),
        attempt_count = d.attempt_count + 1,
        attempt_id = gethookd_uuid7(),
        attempt_started_at = now(),
        updated_at = now()
    WHERE d.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING d.id, d.event_id, d.destination_id, d.lease_token, d.attempt_count,
              d.max_attempts, d.backoff,
              -- Its place in the chosen order, found in an array, not by a join to
              -- picked (see "Plans that cannot go wrong").
              array_position(ARRAY(SELECT id FROM picked ORDER BY ord), d.id) AS ord,
              d.attempt_id
), abandoned AS (
    -- Only a lease that expired leaves an attempt open (every other way out of in_flight
    -- writes it): a claim of due rows writes no attempt at all. Written as cancelled, with
    -- the id and start its process had; ON CONFLICT: an id left on a delivery that a
    -- process from before migration 0016 claimed again (its attempt is the row below).
    INSERT INTO delivery_attempts (id, delivery_id, event_id, destination_id, attempt_number,
                                   started_at, finished_at, outcome, error_message)
    SELECT p.attempt_id, p.id, p.event_id, p.destination_id, p.attempt_count,
           p.attempt_started_at, now(), 'cancelled', %(abandoned)s
    FROM picked p WHERE p.expired AND p.attempt_id IS NOT NULL
    ON CONFLICT (id) DO NOTHING
), abandoned_before_0016 AS (
    -- A lease taken by a process from before migration 0016 left its attempt pending in
    -- delivery_attempts (a rolling upgrade).
    UPDATE delivery_attempts a
    SET outcome = 'cancelled', finished_at = now(), error_message = %(abandoned)s
    WHERE a.delivery_id = ANY(ARRAY(SELECT id FROM picked WHERE expired))
      AND a.outcome = 'pending'
), jobs AS (
    -- Ids as text: the delivery process only passes them on (to a header, a log line, the
    -- finish), and parsing six into uuid.UUID a job and formatting them back cost about
    -- 40 us of its CPU a delivery (bench/bookkeeping.py: 125 -> 83 us).
    -- The columns in queue.Job's order: the job is made from the row as it is.
    SELECT c.id::text AS delivery_id, c.lease_token::text, c.attempt_id::text,
           c.attempt_count AS attempt_number, c.max_attempts, c.backoff,
           e.id::text AS event_id, e.account_id::text, e.event_type, e.direction, e.body,
           e.content_type,
           d.id::text AS destination_id, d.url, d.timeout_seconds, d.signing_secret_enc,
           d.previous_signing_secret_enc, d.auth_config_enc, d.custom_headers, c.ord
    FROM claimed c
    CROSS JOIN LATERAL (
        SELECT e.id, e.account_id, e.event_type, e.direction, e.body, e.content_type
        FROM events e WHERE e.id = c.event_id OFFSET 0
    ) e
    CROSS JOIN LATERAL (
        SELECT d.id, d.url, d.timeout_seconds, d.signing_secret_enc,
               CASE WHEN d.previous_secret_expires_at > now()
                    THEN d.previous_signing_secret_enc END AS previous_signing_secret_enc,
               d.auth_config_enc, d.custom_headers
        FROM destinations d WHERE d.id = c.destination_id OFFSET 0
    ) d
)
SELECT p.parked, t.trimmed, l.lost, jobs.* FROM (SELECT count(*) AS parked FROM parked) p
CROSS JOIN (SELECT count(*) AS trimmed FROM ranked WHERE rn > allowance) t
CROSS JOIN (SELECT (SELECT count(*) FROM chosen) - (SELECT count(*) FROM claimed) AS lost) l
LEFT JOIN jobs ON true
WHERE jobs.delivery_id IS NOT NULL OR p.parked > 0 OR t.trimmed > 0 OR l.lost > 0
ORDER BY jobs.ord;

-- name: finish_deliveries
-- Record a batch of finished attempts: three statements, one transaction. The first two
-- lock the events, then the destinations to write, each in id order (no deadlock between
-- flushers; the claim's foreign-key KEY SHARE does not conflict with NO KEY UPDATE). The
-- third sees every commit of whoever held those locks before: no update is lost.
-- Fenced by the lease token: a row whose lease was taken over changes nothing. A retry
-- of an event replayed meanwhile is cancelled. Destination health: see `tally`.
SELECT 1 FROM events WHERE id = ANY(%(event_ids)s::uuid[]) ORDER BY id FOR UPDATE;
SELECT 1 FROM destinations WHERE id = ANY(%(destination_ids)s::uuid[])
  AND (id = ANY(%(failing_ids)s::uuid[]) OR NOT (consecutive_failures = 0
       AND circuit_state = 'closed' AND last_success_at >= now() - interval '1 second'))
ORDER BY id FOR NO KEY UPDATE;
WITH input AS (
    SELECT * FROM json_to_recordset(%(rows)s::json)
        AS i(delivery_id uuid, lease_token uuid, attempt_id uuid, status text,
             retry_in float8, outcome text, response_status int, response_body text,
             error_message text, latency_ms int, gone bool)
), live AS (
    -- The rows whose lease still holds (the fence below re-checks it under the row lock).
    -- The lease token alone fences: every way out of in_flight clears or replaces it, and
    -- no other status carries one. A `status = 'in_flight'` here and in `fenced` let the
    -- planner read every leased row through deliveries_leased (estimated at the few rows
    -- in flight when it last looked) and match each against the whole batch: with two
    -- delivery processes of 200 greenlets, 300 ms a finish. By key only, it is one lookup
    -- a row.
    SELECT i.*, d.destination_id
    FROM input i CROSS JOIN LATERAL (
        SELECT d.destination_id FROM deliveries d
        WHERE d.id = i.delivery_id AND d.lease_token = i.lease_token OFFSET 0
    ) d
), tally AS (
    -- Destination health, per destination over the batch: a success resets the failure
    -- run and closes the circuit (its held deliveries are then released in the background:
    -- releasing_since); failures extend the run, open the circuit at %(threshold)s in a row
    -- (or re-open a half-open one, the cool-down doubling per re-open up to
    -- %(cooldown_max)s), and disable the destination once it has failed continuously for
    -- %(disable_after)s; a 410 Gone disables it at once. A destination that stops accepting
    -- here has the batch's retries held; its other waiting deliveries are parked by the
    -- claim as it meets them (never a rewrite of its whole backlog inside this statement).
    -- Every row comes back with the destinations whose state changed (for the log).
    SELECT destination_id,
           count(*) FILTER (WHERE outcome = 'success') > 0 AS ok,
           count(*) FILTER (WHERE outcome NOT IN ('success', 'cancelled')) AS failed,
           bool_or(gone) AS gone
    FROM live GROUP BY destination_id
), step AS (
    SELECT dst.id, dst.circuit_state AS was_circuit, dst.disabled_at AS was_disabled,
           dst.was_accepting, dst.active,
           t.ok, t.failed, t.gone,
           CASE WHEN t.ok THEN 0 ELSE dst.consecutive_failures + t.failed END AS failures,
           CASE WHEN t.ok THEN NULL ELSE COALESCE(dst.failing_since, now()) END AS since,
           CASE
               WHEN t.ok THEN 'closed'
               WHEN t.failed > 0 AND (dst.circuit_state = 'half_open'
                   OR (dst.circuit_state = 'closed'
                       AND dst.consecutive_failures + t.failed >= %(threshold)s))
               THEN 'open'
               ELSE dst.circuit_state END AS circuit,
           dst.circuit_opens, dst.circuit_open_until, dst.circuit_probe_id,
           dst.disabled_reason
    FROM tally t CROSS JOIN LATERAL (
        SELECT x.*, destination_accepts_deliveries(x) AS was_accepting
        FROM destinations x WHERE x.id = t.destination_id OFFSET 0
    ) dst
    WHERE (t.ok OR t.failed > 0)
      -- A healthy destination that succeeded within the last second is not written again
      -- (nor locked above): under load its row is not a point of contention between
      -- flushers, and last_success_at is exact to a second.
      AND NOT (t.failed = 0 AND NOT t.gone AND dst.consecutive_failures = 0
               AND dst.circuit_state = 'closed'
               AND dst.last_success_at >= now() - interval '1 second')
), verdict AS (
    SELECT s.*,
           CASE
               WHEN s.was_disabled IS NOT NULL THEN s.was_disabled
               WHEN s.gone OR (NOT s.ok AND s.failed > 0
                   AND s.since <= now() - make_interval(secs => %(disable_after)s::float8))
               THEN now() END AS disabled_at,
           CASE
               WHEN s.was_disabled IS NOT NULL THEN s.disabled_reason
               WHEN s.gone THEN 'destination answered 410 Gone'
               WHEN NOT s.ok AND s.failed > 0
                   AND s.since <= now() - make_interval(secs => %(disable_after)s::float8)
               THEN 'failing continuously since ' || to_char(s.since AT TIME ZONE 'UTC',
                   'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ' (DESTINATION_DISABLE_AFTER)'
               END AS reason,
           s.circuit = 'open' AND s.was_circuit <> 'open' AS opening
    FROM step s
), accepting AS (
    SELECT v.*,
           v.active AND v.disabled_at IS NULL AND v.circuit = 'closed' AS accepting
    FROM verdict v
), decided AS (
    -- stops: this batch made the destination stop accepting (or re-opened its circuit).
    SELECT a.*,
           NOT a.accepting AND (a.was_accepting OR a.opening
               OR (a.disabled_at IS NOT NULL AND a.was_disabled IS NULL)) AS stops
    FROM accepting a
), fenced AS (
    UPDATE deliveries d
    SET status = CASE
            WHEN i.status = 'pending'
                 AND (SELECT e.status FROM events e WHERE e.id = d.event_id) = 'replayed'
            THEN 'cancelled'
            -- This batch made its destination stop accepting: its retries are held (the
            -- destination's other waiting deliveries are parked by the claim when due).
            WHEN i.status = 'pending' AND (SELECT x.stops FROM decided x
                                           WHERE x.id = d.destination_id)
            THEN 'held'
            ELSE i.status END,
        next_attempt_at = CASE WHEN i.status = 'pending'
            THEN now() + make_interval(secs => i.retry_in)
            ELSE d.next_attempt_at END,
        lease_token = NULL, lease_expires_at = NULL, updated_at = now()
    FROM input i
    WHERE d.id = i.delivery_id AND d.lease_token = i.lease_token
      AND d.id = ANY(%(delivery_ids)s::uuid[])
    RETURNING d.id, d.event_id, d.destination_id, d.status, d.attempt_count,
              d.next_attempt_at, d.attempt_started_at, i.attempt_id, i.outcome,
              i.response_status, i.response_body, i.error_message, i.latency_ms
), health AS (
    UPDATE destinations dst
    SET consecutive_failures = v.failures,
        failing_since = v.since,
        last_success_at = CASE WHEN v.ok THEN now() ELSE dst.last_success_at END,
        last_failure_at = CASE WHEN v.failed > 0 THEN now() ELSE dst.last_failure_at END,
        circuit_state = v.circuit,
        circuit_opens = CASE WHEN v.circuit = 'closed' THEN 0
                             WHEN v.opening THEN v.circuit_opens + 1
                             ELSE v.circuit_opens END,
        circuit_open_until = CASE
            WHEN v.circuit = 'closed' THEN NULL
            WHEN v.opening THEN now() + make_interval(secs => LEAST(%(cooldown_max)s::float8,
                %(cooldown)s::float8 * 2.0 ^ LEAST(v.circuit_opens, 30)))
            ELSE v.circuit_open_until END,
        circuit_probe_id = CASE WHEN v.circuit = 'half_open' THEN v.circuit_probe_id END,
        disabled_at = v.disabled_at,
        disabled_reason = v.reason,
        releasing_since = CASE WHEN v.accepting AND NOT v.was_accepting THEN now()
                               ELSE dst.releasing_since END,
        updated_at = now()
    FROM decided v WHERE dst.id = v.id AND dst.id = ANY(%(destination_ids)s::uuid[])
    RETURNING dst.id, dst.name, dst.account_id, v.was_circuit, dst.circuit_state,
              dst.consecutive_failures, dst.circuit_open_until, v.was_disabled,
              dst.disabled_at, dst.disabled_reason
), attempt AS (
    -- The attempt is written once, finished (migration 0016); its outcome rides on the
    -- fenced rows: no join of two CTEs (estimated at a row each and joined row by row).
    INSERT INTO delivery_attempts (id, delivery_id, event_id, destination_id, attempt_number,
                                   started_at, finished_at, outcome, response_status,
                                   response_body, error_message, latency_ms)
    SELECT f.attempt_id, f.id, f.event_id, f.destination_id, f.attempt_count,
           f.attempt_started_at, now(), f.outcome, f.response_status, f.response_body,
           f.error_message, f.latency_ms
    FROM fenced f
), siblings AS (
    -- The events' deliveries as this statement leaves them: the others as committed, the
    -- batch's as just updated (a statement does not see its own CTEs' updates).
    SELECT d.event_id, d.status, d.attempt_count, d.next_attempt_at FROM deliveries d
    WHERE d.event_id = ANY(%(event_ids)s::uuid[])
      AND d.event_id IN (SELECT event_id FROM fenced)
      AND d.id NOT IN (SELECT id FROM fenced)
    UNION ALL
    SELECT event_id, status, attempt_count, next_attempt_at FROM fenced
), summary AS (
    -- 'held' (its destination cannot take it now) is waiting, as 'pending' is.
    SELECT event_id,
           count(*) AS total,
           count(*) FILTER (WHERE status = 'in_flight') AS in_flight,
           count(*) FILTER (WHERE status IN ('pending', 'held')) AS waiting,
           count(*) FILTER (WHERE status = 'dead') AS dead,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           COALESCE(sum(attempt_count), 0) AS attempts,
           min(next_attempt_at) FILTER (WHERE status IN ('pending', 'held')) AS next_at
    FROM siblings GROUP BY event_id
), refreshed AS (
    -- The event's status summarises its deliveries.
    UPDATE events e
    SET status = CASE
            WHEN e.status = 'replayed' THEN e.status
            WHEN s.in_flight > 0 THEN 'delivering'
            WHEN s.waiting > 0 AND s.attempts > 0 THEN 'retry_scheduled'
            WHEN s.waiting > 0 THEN 'queued'
            WHEN s.dead > 0 THEN 'dead_letter'
            ELSE 'delivered' END,
        final_state = CASE
            WHEN s.in_flight + s.waiting > 0 THEN NULL
            WHEN s.dead > 0 THEN 'dead_letter'
            WHEN s.succeeded = s.total THEN 'delivered'
            ELSE NULL END,
        next_attempt_at = s.next_at,
        attempts_count = s.attempts
    FROM summary s
    WHERE e.id = s.event_id AND e.id = ANY(%(event_ids)s::uuid[])
)
SELECT id::text AS delivery_id, status,
       (SELECT jsonb_agg(to_jsonb(h)) FROM health h
        WHERE h.was_circuit <> h.circuit_state
           OR h.was_disabled IS DISTINCT FROM h.disabled_at) AS transitions
FROM fenced;

-- name: release_circuit_probes
-- The cool-down is over: each such destination's circuit goes half-open and its earliest
-- held delivery is released as the probe (due now), which alone the claim may send. A
-- half-open circuit whose probe never came back (lost, deleted, replayed) gets a new probe
-- after %(probe_window)s. Run by every delivery process: SKIP LOCKED and a conditional
-- UPDATE, so two processes never release two probes for one destination. A circuit with
-- nothing held stays open until a delivery arrives (the claim parks it; the next step
-- releases it).
WITH ready AS (
    SELECT dst.id FROM destinations dst
    WHERE dst.circuit_state <> 'closed' AND dst.circuit_open_until <= now()
      AND dst.active AND dst.disabled_at IS NULL
    ORDER BY dst.circuit_open_until
    LIMIT 100
    FOR NO KEY UPDATE SKIP LOCKED
), probe AS (
    SELECT r.id AS destination_id, p.id AS delivery_id
    FROM ready r
    CROSS JOIN LATERAL (
        SELECT d.id FROM deliveries d
        WHERE d.destination_id = r.id AND d.status = 'held'
        ORDER BY d.next_attempt_at
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) p
), half_open AS (
    UPDATE destinations dst
    SET circuit_state = 'half_open', circuit_probe_id = p.delivery_id,
        circuit_open_until = now() + make_interval(secs => %(probe_window)s::float8),
        updated_at = now()
    FROM probe p WHERE dst.id = p.destination_id
    RETURNING dst.id
), released AS (
    UPDATE deliveries d
    SET status = 'pending', next_attempt_at = LEAST(d.next_attempt_at, now()),
        updated_at = now()
    FROM probe p WHERE d.id = p.delivery_id
    RETURNING d.id
)
SELECT p.destination_id, p.delivery_id,
       (SELECT count(*) FROM half_open) + (SELECT count(*) FROM released) AS changed
FROM probe p;

-- name: flag_destination_hold
-- A destination stopped accepting deliveries (paused): the delivery processes move its
-- waiting deliveries out of the claim's path in the background (hold_waiting_chunks).
-- Runs in the transaction that changed the destination, after that change.
UPDATE destinations SET holding_since = now(), holding_after = '-infinity'
WHERE id = %(destination_id)s;

-- name: hold_waiting_chunks
-- Destinations paused (holding_since, migration 0013): up to %(chunk)s of each one's
-- pending deliveries are held, oldest first, keeping their next_attempt_at. Every delivery
-- process runs it, again at once while a chunk comes back full. A destination is locked
-- for its chunk (SKIP LOCKED), as in release_held_chunks. Each chunk walks the due index on
-- from where the last one stopped (holding_after); a pending row it passes by (locked by a
-- claim, or made pending behind it) is parked by the claim if it comes due. The flag is
-- cleared once a chunk comes back short, or at once if the destination accepts deliveries
-- again (its resume releases what was held).
WITH picked AS (
    SELECT dst.id, dst.holding_after, destination_accepts_deliveries(dst) AS accepting
    FROM destinations dst
    WHERE dst.holding_since IS NOT NULL
    ORDER BY dst.holding_since
    LIMIT %(destinations)s
    FOR NO KEY UPDATE SKIP LOCKED
), chunk AS (
    SELECT p.id AS destination_id, c.id, c.next_attempt_at
    FROM picked p
    CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at FROM deliveries d
        WHERE NOT p.accepting AND d.status = 'pending' AND d.destination_id = p.id
          AND d.next_attempt_at >= p.holding_after
        ORDER BY d.next_attempt_at
        LIMIT %(chunk)s
        FOR UPDATE SKIP LOCKED
    ) c
), held AS (
    -- By primary key, as in release_held_chunks.
    UPDATE deliveries d SET status = 'held', updated_at = now()
    WHERE d.id = ANY(ARRAY(SELECT c.id FROM chunk c))
    RETURNING d.id
), counted AS (
    SELECT p.*, COALESCE(k.n, 0) AS held, k.last
    FROM picked p
    LEFT JOIN (SELECT destination_id, count(*) AS n, max(next_attempt_at) AS last
               FROM chunk GROUP BY destination_id) k ON k.destination_id = p.id
), moved AS (
    UPDATE destinations dst
    SET holding_since = CASE WHEN c.accepting OR c.held < %(chunk)s THEN NULL
                             ELSE dst.holding_since END,
        holding_after = CASE WHEN c.accepting OR c.held < %(chunk)s THEN NULL
                             ELSE c.last END
    FROM counted c
    WHERE dst.id = c.id
)
SELECT c.id AS destination_id, c.held, c.held = %(chunk)s AS more,
       (SELECT count(*) FROM held) AS total
FROM counted c;

-- name: vacuum_deliveries
-- The dead index entries a large hold leaves in the claim's path, removed (see
-- queue.vacuum_deliveries). SKIP_LOCKED: a vacuum of the table already running (autovacuum,
-- another delivery process) is left to finish it. INDEX_CLEANUP ON: the entries are the point,
-- even where the table's dead rows are too few for a vacuum to clean its indexes by default.
VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON) deliveries;

-- name: release_held_chunks
-- Destinations that accept deliveries again (releasing_since, migration 0010): up to
-- %(chunk)s of each one's held deliveries are pending again, oldest first, keeping their
-- next_attempt_at (none is lost, none jumps the queue). Every delivery process runs it,
-- again at once while a chunk comes back full. A destination is locked for its chunk (SKIP
-- LOCKED): two processes never release the same one at once, and a change to it waits one
-- chunk at most. Its flag is cleared once a chunk comes back short and %(grace)s seconds
-- have passed since it was set (a delivery inserted 'held' by an ingest that read the
-- destination just before it changed is released too), or at once if it stopped accepting
-- again (the next resume sets it again). The oldest %(destinations)s flags are looked at.
WITH picked AS (
    SELECT dst.id, dst.releasing_since, destination_accepts_deliveries(dst) AS accepting
    FROM destinations dst
    WHERE dst.releasing_since IS NOT NULL
    ORDER BY dst.releasing_since
    LIMIT %(destinations)s
    FOR NO KEY UPDATE SKIP LOCKED
), chunk AS (
    SELECT p.id AS destination_id, c.id
    FROM picked p
    CROSS JOIN LATERAL (
        SELECT d.id FROM deliveries d
        WHERE p.accepting AND d.destination_id = p.id AND d.status = 'held'
        ORDER BY d.next_attempt_at
        LIMIT %(chunk)s
        FOR UPDATE SKIP LOCKED
    ) c
), released AS (
    -- By primary key (an array, so the planner never sizes the chunk at LIMIT x LIMIT
    -- and scans the table instead).
    UPDATE deliveries d SET status = 'pending', updated_at = now()
    WHERE d.id = ANY(ARRAY(SELECT c.id FROM chunk c))
    RETURNING d.id
), counted AS (
    SELECT p.*, COALESCE(k.n, 0) AS released
    FROM picked p
    LEFT JOIN (SELECT destination_id, count(*) AS n FROM chunk GROUP BY destination_id) k
        ON k.destination_id = p.id
), cleared AS (
    UPDATE destinations dst SET releasing_since = NULL
    FROM counted c
    WHERE dst.id = c.id
      AND (NOT c.accepting
           OR (c.released < %(chunk)s
               AND c.releasing_since <= now() - make_interval(secs => %(grace)s::float8)))
)
SELECT c.id AS destination_id, c.released, c.released = %(chunk)s AS more,
       (SELECT count(*) FROM released) AS total
FROM counted c;

-- name: notify_deliveries
NOTIFY gethookd_deliveries;

-- name: notify_release
-- A destination accepts deliveries again: wake the background release at once.
NOTIFY gethookd_release;

-- name: listen_deliveries
LISTEN gethookd_deliveries;
LISTEN gethookd_release;
