-- What /metrics reads from the database at scrape time (queue depth comes from status_queue).

-- name: metrics_destinations
-- Destinations by state, as `gethookd status` names them: disabled (410 Gone or failing
-- for DESTINATION_DISABLE_AFTER), paused (active = false, by their owner), circuit_open
-- (open or half-open: deliveries held), else active.
SELECT CASE WHEN dst.disabled_at IS NOT NULL THEN 'disabled'
            WHEN NOT dst.active THEN 'paused'
            WHEN dst.circuit_state <> 'closed' THEN 'circuit_open'
            ELSE 'active' END AS state,
       count(*) AS count
FROM destinations dst
GROUP BY 1;
