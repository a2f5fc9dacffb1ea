-- Bulk replay (gethookd/services/replay.py): jobs, their items, and the one-destination
-- variant of mark_replayed. The originals a job takes come from filter_batch
-- (event_filter.sql); each is replayed by the same code as a single replay.

-- name: mark_replayed_to
-- A replay to one destination supersedes only the originals' waiting deliveries there; an
-- original is 'replayed' (its retries stop) only when no other delivery of it still waits.
WITH cancelled AS (
    UPDATE deliveries SET status = 'cancelled', lease_token = NULL, updated_at = now()
    WHERE event_id = ANY(%(ids)s::uuid[]) AND destination_id = %(destination_id)s
      AND status IN ('pending', 'held')
)
UPDATE events e SET status = 'replayed', next_attempt_at = NULL
WHERE e.id = ANY(%(ids)s::uuid[])
  AND NOT EXISTS (SELECT 1 FROM deliveries d
                  WHERE d.event_id = e.id AND d.destination_id <> %(destination_id)s
                    AND d.status IN ('pending', 'held', 'in_flight'));

-- name: replay_now
SELECT now() AS now;

-- name: replay_destination_of_account
SELECT id FROM destinations WHERE id = %(id)s AND account_id = %(account_id)s;

-- name: replay_job_create
INSERT INTO replay_jobs (account_id, filter, to_destination_id, runner, rate, upto, total)
VALUES (%(account_id)s, %(filter)s, %(to_destination_id)s, %(runner)s, %(rate)s, %(upto)s,
        %(total)s)
RETURNING *;

-- name: replay_job_get
SELECT * FROM replay_jobs WHERE id = %(id)s AND account_id = %(account_id)s;

-- name: replay_job_by_id
-- Any account's (the CLI's --resume, the background runner).
SELECT * FROM replay_jobs WHERE id = %(id)s;

-- name: replay_job_open_like
-- An unfinished CLI job with the same account, filter and target: running the same command
-- again resumes it rather than starting over.
SELECT * FROM replay_jobs
WHERE account_id = %(account_id)s AND state IN ('pending', 'running') AND runner = 'cli'
  AND filter = %(filter)s::jsonb
  AND to_destination_id IS NOT DISTINCT FROM %(to_destination_id)s::uuid
ORDER BY created_at
LIMIT 1;

-- name: replay_jobs_open_background
SELECT id FROM replay_jobs
WHERE state IN ('pending', 'running') AND runner = 'background'
ORDER BY created_at
LIMIT 20;

-- name: replay_job_try_lock
-- A session lock on the runner's own connection: one runner per job among all processes;
-- a crashed runner's lock goes with its connection.
SELECT pg_try_advisory_lock(hashtextextended(%(id)s::text, 7365)) AS locked;

-- name: replay_job_start
UPDATE replay_jobs
SET state = 'running', started_at = COALESCE(started_at, now()), updated_at = now()
WHERE id = %(id)s AND state IN ('pending', 'running')
RETURNING *;

-- name: replay_job_lock
-- Each batch starts here: a cancel (or a finish) waits for the batch, and the batch sees it.
SELECT * FROM replay_jobs WHERE id = %(id)s FOR UPDATE;

-- name: replay_job_cancel
UPDATE replay_jobs
SET state = 'cancelled', finished_at = now(), updated_at = now()
WHERE id = %(id)s AND account_id = %(account_id)s AND state IN ('pending', 'running')
RETURNING *;

-- name: replay_items_take
-- Claims the batch's originals for this job; back come those it had not replayed yet.
INSERT INTO replay_job_items (job_id, original_event_id)
SELECT %(job_id)s, unnest(%(ids)s::uuid[])
ON CONFLICT DO NOTHING
RETURNING original_event_id;

-- name: replay_items_done
UPDATE replay_job_items i SET replay_event_id = r.replay
FROM unnest(%(originals)s::uuid[], %(replays)s::uuid[]) AS r(original, replay)
WHERE i.job_id = %(job_id)s AND i.original_event_id = r.original;

-- name: replay_job_advance
-- In the batch's transaction: the cursor and the counts move with the replays themselves.
UPDATE replay_jobs
SET cursor_created_at = %(after_at)s, cursor_event_id = %(after_id)s,
    replayed = replayed + %(replayed)s, skipped = skipped + %(skipped)s, updated_at = now()
WHERE id = %(id)s
RETURNING *;

-- name: replay_job_finish
UPDATE replay_jobs
SET state = %(state)s, error = %(error)s, finished_at = now(), updated_at = now()
WHERE id = %(id)s AND state IN ('pending', 'running')
RETURNING *;

-- name: replay_job_items_of
SELECT original_event_id, replay_event_id FROM replay_job_items WHERE job_id = %(job_id)s;
