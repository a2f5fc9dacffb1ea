-- Event filters at a million rows, and bulk replay as a resumable job (issue 10, item 1).
--
-- Lists and replay filter by the columns of gethookd/sql/event_filter.sql and page keyset on
-- (created_at, id): events_account_created already serves the plain list, the source filter
-- and the time range. An event-type filter gets its own index (event_type never changes, so
-- the index costs an insert nothing more than one more entry). There is deliberately no
-- index on status: status changes on every delivery, and an index on it would turn those
-- HOT updates into full ones; a status filter walks events_account_created instead.
CREATE INDEX events_account_type ON events (account_id, event_type, created_at DESC, id DESC)
    WHERE event_type IS NOT NULL;

-- A bulk replay: what to replay (filter, upto = the job's creation, so its own replays are
-- never picked up), where it got to (the last original done, by (created_at, id)), counts
-- and state. 'cli' jobs run in `gethookd replay` (resumed by it), 'background' jobs in a
-- delivery process; a session advisory lock per job makes one runner per job anywhere.
CREATE TABLE replay_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    filter jsonb NOT NULL,
    to_destination_id uuid,  -- replay to this destination only; NULL: every route
    runner text NOT NULL CHECK (runner IN ('background', 'cli')),
    rate integer CHECK (rate > 0),  -- events per second at most; NULL: batches and a pause
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'running', 'finished', 'failed', 'cancelled')),
    upto timestamptz NOT NULL DEFAULT now(),
    cursor_created_at timestamptz,
    cursor_event_id uuid,
    total bigint NOT NULL,
    replayed bigint NOT NULL DEFAULT 0,
    skipped bigint NOT NULL DEFAULT 0,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX replay_jobs_account ON replay_jobs (account_id, created_at DESC);
CREATE INDEX replay_jobs_open ON replay_jobs (created_at) WHERE state IN ('pending', 'running');

-- One row per original a job has replayed, written in the replay's own transaction: the
-- primary key is what makes "nothing twice" hold after any crash or concurrent runner.
-- No foreign keys to events: retention may delete an original or its replay later.
CREATE TABLE replay_job_items (
    job_id uuid NOT NULL REFERENCES replay_jobs (id) ON DELETE CASCADE,
    original_event_id uuid NOT NULL,
    replay_event_id uuid,  -- NULL: skipped (gone, or nothing to replay it to)
    PRIMARY KEY (job_id, original_event_id)
);
