-- What /metrics reads from the database at scrape time (queue depth comes from status_queue).

-- name: metrics_destinations
-- Destinations by state. paused: switched off by their owner (active = false).
SELECT CASE WHEN dst.active THEN 'active' ELSE 'paused' END AS state, count(*) AS count
FROM destinations dst
GROUP BY 1;
