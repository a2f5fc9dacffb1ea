-- `gethookd status`: what an operator asks of the queue. Read only; no locks taken.

-- name: status_queue
-- Deliveries by state. Due: pending and its time has come (what the delivery processes should
-- be sending now); scheduled: pending for later (a retry's backoff); held: waiting on a paused,
-- disabled or circuit-open destination. The age of the oldest due delivery says whether the queue is moving.
SELECT
    count(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= now()) AS due,
    count(*) FILTER (WHERE status = 'pending' AND next_attempt_at > now()) AS scheduled,
    count(*) FILTER (WHERE status = 'in_flight') AS in_flight,
    count(*) FILTER (WHERE status = 'in_flight' AND lease_expires_at <= now()) AS lease_expired,
    count(*) FILTER (WHERE status = 'held') AS held,
    COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at)
        FILTER (WHERE status = 'pending' AND next_attempt_at <= now())), 0)::float
        AS oldest_due_seconds
FROM deliveries
WHERE status IN ('pending', 'in_flight', 'held');

-- name: status_dead_letters
-- Deliveries that gave up (dead-lettered) within the last %(hours)s hours.
SELECT count(*) AS dead
FROM deliveries
WHERE status = 'dead' AND updated_at > now() - make_interval(hours => %(hours)s);

-- name: status_unhealthy_destinations
-- Destinations that are not delivering normally, with the deliveries waiting on each.
-- state: 'disabled' (410 Gone or failing for DESTINATION_DISABLE_AFTER), 'paused'
-- (active = false), 'circuit_open' (its circuit is open or half-open: held, probing).
SELECT dst.id, dst.account_id, dst.name,
    CASE WHEN dst.disabled_at IS NOT NULL THEN 'disabled'
         WHEN NOT dst.active THEN 'paused'
         ELSE 'circuit_open' END AS state,
    dst.disabled_reason, dst.consecutive_failures,
    (SELECT count(*) FROM deliveries d
     WHERE d.destination_id = dst.id AND d.status IN ('held', 'pending')) AS waiting
FROM destinations dst
WHERE NOT dst.active OR dst.disabled_at IS NOT NULL OR dst.circuit_state <> 'closed'
ORDER BY waiting DESC, dst.name
LIMIT %(limit)s;
