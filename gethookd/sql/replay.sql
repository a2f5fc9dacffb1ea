-- Bulk replay (gethookd/services/replay.py): jobs, their items, and the one-destination
-- variant of mark_replayed. The originals a job takes come from filter_batch
-- (event_filter.sql); each is replayed by the same code as a single replay.

-- name: mark_replayed_to
-- A replay to one destination supersedes only the original's waiting delivery there; the
-- original is 'replayed' (its retries stop) only when no other delivery of it still waits.
WITH cancelled AS (
    UPDATE deliveries SET status = 'cancelled', lease_token = NULL, updated_at = now()
    WHERE event_id = %(id)s AND destination_id = %(destination_id)s
      AND status IN ('pending', 'held')
)
UPDATE events SET status = 'replayed', next_attempt_at = NULL
WHERE id = %(id)s
  AND NOT EXISTS (SELECT 1 FROM deliveries d
                  WHERE d.event_id = %(id)s AND d.destination_id <> %(destination_id)s
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

-- name: replay_lock_originals
-- The batch's originals locked up front in id order, the order the delivery flush locks
-- events in, so a batch and a flush never deadlock.
SELECT id FROM events WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR UPDATE;

-- name: replay_item_take
-- Claims an original for this job; nothing back means it was replayed by this job already.
INSERT INTO replay_job_items (job_id, original_event_id) VALUES (%(job_id)s, %(original)s)
ON CONFLICT DO NOTHING
RETURNING original_event_id;

-- name: replay_item_done
UPDATE replay_job_items SET replay_event_id = %(replay)s
WHERE job_id = %(job_id)s AND original_event_id = %(original)s;

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
