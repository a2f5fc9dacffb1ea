-- Retention: events older than their account's window whose deliveries are all finished
-- are deleted with their deliveries and attempts, a bounded batch per transaction.

-- name: retention_accounts
SELECT id, COALESCE(retention_days, %(default_days)s) AS retention_days FROM accounts ORDER BY id

-- name: retention_count
SELECT count(*) AS n
FROM events e
WHERE e.account_id = %(account_id)s
  AND e.created_at < now() - make_interval(days => %(days)s)
  AND NOT EXISTS (SELECT 1 FROM deliveries d
                  WHERE d.event_id = e.id AND d.status IN ('pending', 'in_flight', 'held'))

-- name: retention_candidates
-- The next batch after the cursor (created_at, id), oldest first: one backward range scan of
-- events_account_created. The cursor moves past the events kept (a delivery still waiting),
-- so each is read once per run, not once per batch.
SELECT e.id, e.created_at
FROM events e
WHERE e.account_id = %(account_id)s
  AND e.created_at < now() - make_interval(days => %(days)s)
  AND (e.created_at, e.id) > (%(after_created)s::timestamptz, %(after_id)s::uuid)
  AND NOT EXISTS (SELECT 1 FROM deliveries d
                  WHERE d.event_id = e.id AND d.status IN ('pending', 'in_flight', 'held'))
ORDER BY e.created_at, e.id
LIMIT %(limit)s
FOR UPDATE OF e SKIP LOCKED

-- name: retention_lock_deliveries
-- Locks the candidates' deliveries and reads their status as committed now: one set back
-- to pending since the candidates were chosen keeps its event.
SELECT event_id, status FROM deliveries WHERE event_id = ANY(%(ids)s::uuid[]) FOR UPDATE

-- name: retention_delete
WITH gone_attempts AS (
    DELETE FROM delivery_attempts WHERE event_id = ANY(%(ids)s::uuid[])
), gone_deliveries AS (
    DELETE FROM deliveries WHERE event_id = ANY(%(ids)s::uuid[])
)
DELETE FROM events WHERE id = ANY(%(ids)s::uuid[])

-- name: retention_try_lock
SELECT pg_try_advisory_lock(%(lock)s) AS locked

-- name: retention_unlock
SELECT pg_advisory_unlock(%(lock)s)

-- name: retention_expired_replay_jobs
-- Bulk replay jobs that ended longer ago than the account's window. Their items go first, a
-- batch at a time (a job over a million events has a million items), then the job itself.
SELECT id FROM replay_jobs
WHERE account_id = %(account_id)s
  AND state IN ('finished', 'failed', 'cancelled')
  AND finished_at < now() - make_interval(days => %(days)s)
ORDER BY finished_at
LIMIT 100

-- name: retention_delete_replay_items
DELETE FROM replay_job_items
WHERE (job_id, original_event_id) IN (
    SELECT job_id, original_event_id FROM replay_job_items
    WHERE job_id = %(job_id)s LIMIT %(limit)s)

-- name: retention_delete_replay_job
DELETE FROM replay_jobs WHERE id = %(job_id)s
