"""Bulk replay: every event a filter matches replayed as a job, in bounded batches.

A million events cannot be replayed in one request or one transaction, so a replay is a
job row (migrations/0008_bulk_replay.sql): the filter, an upper time bound (the job's
creation, so its own replays are never taken again), a cursor (the last original done, by
(created_at, id)) and counts. A runner takes the job's advisory lock on a connection of its
own (one runner per job among all processes) and replays batch after batch; each batch is
one transaction holding the replays, their items and the cursor, so a crash loses a whole
batch or nothing. Each original is claimed in replay_job_items (primary key (job, original))
in that same transaction: that key, not the cursor, is why nothing is replayed twice.

Each event is replayed by Events.replay_in, the code path of a single replay.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from gethookd.config import Config
from gethookd.db import QUERIES, Database, connect
from gethookd.errors import NotFound
from gethookd.services.event_filter import EventFilter
from gethookd.services.events import Events

log = logging.getLogger("gethookd.replay")

BATCH = 200  # originals per transaction
PAUSE = 0.05  # seconds between two batches of a job without a rate
EVERY = 2.0  # seconds between two looks of a delivery process for background jobs
OPEN = ("pending", "running")


class Replays(Events):
    """Create, inspect and run bulk replay jobs."""

    def matching(
        self,
        account_id: uuid.UUID,
        event_filter: EventFilter,
        to_destination_id: uuid.UUID | None = None,
    ) -> int:
        """How many events a replay would take now (the dry run)."""
        with self.db.transaction() as cur:
            self._check_destination(cur, account_id, to_destination_id)
            params = {**event_filter.params(), "account_id": account_id, "upto": None}
            return cur.one("filter_count", params)["total"]

    def create(
        self,
        account_id: uuid.UUID,
        event_filter: EventFilter,
        to_destination_id: uuid.UUID | None = None,
        runner: str = "background",
        rate: int | None = None,
    ) -> dict:
        """A new job over what the filter matches now; run by a delivery process
        (background) or by the caller (cli)."""
        with self.db.transaction() as cur:
            self._check_destination(cur, account_id, to_destination_id)
            upto = cur.one("replay_now")["now"]
            params = {**event_filter.params(), "account_id": account_id, "upto": upto}
            total = cur.one("filter_count", params)["total"]
            job = cur.one(
                "replay_job_create",
                {
                    "account_id": account_id,
                    "filter": event_filter.to_json(),
                    "to_destination_id": to_destination_id,
                    "runner": runner,
                    "rate": rate,
                    "upto": upto,
                    "total": total,
                },
            )
        log.info("replay job %s created: %d event(s) to replay", job["id"], total)
        return job_view(job)

    def open_like(
        self,
        account_id: uuid.UUID,
        event_filter: EventFilter,
        to_destination_id: uuid.UUID | None,
    ) -> dict | None:
        """An unfinished CLI job with this account, filter and target (to resume)."""
        with self.db.transaction() as cur:
            self._check_destination(cur, account_id, to_destination_id)
            job = cur.one(
                "replay_job_open_like",
                {
                    "account_id": account_id,
                    "filter": event_filter.to_json(),
                    "to_destination_id": to_destination_id,
                },
            )
        return job_view(job) if job else None

    def get(self, account_id: uuid.UUID | None, job_id: uuid.UUID) -> dict:
        """A job of this account (any account's with account_id None: the CLI)."""
        with self.db.transaction() as cur:
            if account_id is None:
                job = cur.one("replay_job_by_id", {"id": job_id})
            else:
                job = cur.one("replay_job_get", {"id": job_id, "account_id": account_id})
        if job is None:
            raise NotFound(f"replay job {job_id} not found")
        return job_view(job)

    def cancel(self, account_id: uuid.UUID, job_id: uuid.UUID) -> dict:
        """Stop a job after its current batch; what it replayed stays replayed."""
        with self.db.transaction() as cur:
            job = cur.one("replay_job_cancel", {"id": job_id, "account_id": account_id})
        return job_view(job) if job else self.get(account_id, job_id)

    def items(self, job_id: uuid.UUID) -> dict[uuid.UUID, uuid.UUID | None]:
        """Original -> its replay (None: skipped), for inspection and tests."""
        with self.db.transaction() as cur:
            rows = cur.all("replay_job_items_of", {"job_id": job_id})
        return {r["original_event_id"]: r["replay_event_id"] for r in rows}

    def run(
        self,
        job_id: uuid.UUID,
        rate: float | None = None,
        batch: int = BATCH,
        progress: Callable[[int], None] = lambda n: None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> dict | None:
        """Run a job to its end (or until stopping()); its final row, or None when another
        process runs it now. rate: originals per second at most (batches shrink to fit)."""
        lock_conn = connect(self.config.DATABASE_URL, autocommit=True)
        try:
            with lock_conn.cursor() as cur:
                cur.execute(QUERIES["replay_job_try_lock"], {"id": job_id})
                if not cur.fetchone()[0]:
                    return None
            with self.db.transaction() as cur:
                job = cur.one("replay_job_start", {"id": job_id})
            if job is None:  # finished, failed or cancelled meanwhile
                return self.get(None, job_id)
            if rate:
                batch = max(1, min(batch, int(rate)))
            while not stopping():
                started = time.monotonic()
                job, done = self._batch(job, batch)
                if job["state"] not in OPEN:
                    break
                progress(done)
                wait = done / rate if rate else PAUSE
                time.sleep(max(0.0, started + wait - time.monotonic()))
            return job_view(job)
        finally:
            lock_conn.close()  # releases the lock

    def _batch(self, job: dict, size: int) -> tuple[dict, int]:
        """One transaction: the next originals replayed, claimed, and the cursor moved."""
        event_filter = EventFilter.from_json(job["filter"])
        account, to_dest = job["account_id"], job["to_destination_id"]
        with self.db.transaction() as cur:
            job = cur.one("replay_job_lock", {"id": job["id"]})
            if job["state"] not in OPEN:  # cancelled meanwhile
                return job, 0
            if to_dest is not None and not cur.one(
                "replay_destination_of_account", {"id": to_dest, "account_id": account}
            ):
                failed = cur.one(
                    "replay_job_finish",
                    {"id": job["id"], "state": "failed", "error": "to_destination_id deleted"},
                )
                return failed, 0
            rows = cur.all(
                "filter_batch",
                {
                    **event_filter.params(),
                    "account_id": account,
                    "upto": job["upto"],
                    "after_at": job["cursor_created_at"],
                    "after_id": job["cursor_event_id"],
                    "limit": size,
                },
            )
            if not rows:
                done = cur.one(
                    "replay_job_finish", {"id": job["id"], "state": "finished", "error": None}
                )
                log.info("replay job %s finished", job["id"])
                return done, 0
            cur.run("replay_lock_originals", {"ids": [r["id"] for r in rows]})
            replayed = skipped = 0
            for row in rows:
                claim = {"job_id": job["id"], "original": row["id"]}
                if cur.one("replay_item_take", claim) is None:
                    continue  # this job replayed it already
                try:
                    stored = self.replay_in(cur, account, row["id"], None, to_dest)
                except NotFound:  # deleted (retention) since the batch was read
                    stored = None
                if stored is None:
                    skipped += 1
                    continue
                cur.run("replay_item_done", {**claim, "replay": stored["id"]})
                replayed += 1
            job = cur.one(
                "replay_job_advance",
                {
                    "id": job["id"],
                    "after_at": rows[-1]["created_at"],
                    "after_id": rows[-1]["id"],
                    "replayed": replayed,
                    "skipped": skipped,
                },
            )
        return job, len(rows)

    @staticmethod
    def _check_destination(cur: Any, account_id: uuid.UUID, dest: uuid.UUID | None) -> None:
        if dest is not None and not cur.one(
            "replay_destination_of_account", {"id": dest, "account_id": account_id}
        ):
            raise NotFound(f"destination {dest} not found")


def job_view(row: dict) -> dict:
    """A job as the API shows it (the cursor and bound stay inside)."""
    return {
        "id": row["id"],
        "account_id": row["account_id"],
        "state": row["state"],
        "filter": row["filter"],
        "to_destination_id": row["to_destination_id"],
        "runner": row["runner"],
        "rate": row["rate"],
        "total": row["total"],
        "replayed": row["replayed"],
        "skipped": row["skipped"],
        "error": row["error"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        # kept for the runner; not part of the answer's schema
        "upto": row["upto"],
        "cursor_created_at": row["cursor_created_at"],
        "cursor_event_id": row["cursor_event_id"],
    }


def public(job: dict) -> dict:
    """The answer's fields only."""
    hidden = ("upto", "cursor_created_at", "cursor_event_id")
    return {k: v for k, v in job.items() if k not in hidden}


def run_forever(config: Config, every: float = EVERY) -> None:
    """A delivery process's background job (a greenlet): run the background replay jobs
    no other process runs. Killed with its process; a job resumes at its cursor."""
    time.sleep(random.uniform(0.1, 1.0) * every)  # noqa: S311 - spreads processes apart
    database = Database(config.DATABASE_URL, maxconn=2)
    replays = Replays(config, database)
    while True:
        try:
            with database.transaction() as cur:
                ids = [r["id"] for r in cur.all("replay_jobs_open_background")]
            for job_id in ids:
                job = replays.run(job_id)
                if job is not None:
                    log.info(
                        "replay job %s %s: %d replayed, %d skipped",
                        job_id,
                        job["state"],
                        job["replayed"],
                        job["skipped"],
                    )
        except Exception:
            log.exception("replay runner failed; trying again later")
        time.sleep(every)
