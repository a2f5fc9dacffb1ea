"""Retention: delete finished events older than their account's `retention_days` (default
RETENTION_DAYS), with their deliveries and attempts, and bulk-replay jobs that ended
longer ago than the same window.

Exactly one process among all instances purges at a time: it holds a PostgreSQL advisory
lock on a connection of its own for the whole run (a crashed holder's lock goes with its
connection). Deletion goes in bounded batches (RETENTION_BATCH_SIZE), each its own short
transaction, with a rest between (RETENTION_PAUSE, and never shorter than the batch took),
so ingest and delivery never wait long behind it nor lose more than a share of the database.
Each batch is an index range scan after a cursor, so the events kept are read once per run.
An event with a pending (or retrying), held or in-flight delivery is never deleted.
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

log = logging.getLogger(__name__)

LOCK_ID = 0x6765_7468_7265_746E  # "gethretn": distinct from the migrations' lock
BATCH = 500
PAUSE = 0.05  # seconds between two batches, at least
REST = 1.0  # ... and at least this many times as long as the last batch took
EVERY = 300.0  # seconds between two attempts of a delivery process to take the job
ACTIVE = ("pending", "in_flight", "held")


def count(database: Database, default_days: int) -> dict[Any, int]:
    """Account id -> events the purge would delete now (the dry run)."""
    found = {}
    with database.transaction() as cur:
        for account in cur.all("retention_accounts", {"default_days": default_days}):
            params = {"account_id": account["id"], "days": account["retention_days"]}
            n = cur.one("retention_count", params)["n"]
            if n:
                found[account["id"]] = n
    return found


def purge(
    database: Database,
    default_days: int,
    batch: int = BATCH,
    pause: float = PAUSE,
    progress: Callable[[int], None] = lambda n: None,
    stopping: Callable[[], bool] = lambda: False,
    rest: float = REST,
) -> int:
    """Delete every expired finished event, batch by batch; returns how many.

    After each batch it rests `pause`, or `rest` times as long as the batch took if longer:
    the purge then takes at most 1 / (1 + rest) of one database connection's time, however
    slow the database is under live load (a fixed pause alone does not bound that).
    """
    deleted = 0
    with database.transaction() as cur:
        accounts = cur.all("retention_accounts", {"default_days": default_days})
    for account in accounts:
        params = {"account_id": account["id"], "days": account["retention_days"], "limit": batch}
        params |= {"after_created": "-infinity", "after_id": str(uuid.UUID(int=0))}
        while not stopping():
            started = time.monotonic()
            with database.transaction() as cur:
                rows = cur.all("retention_candidates", params)
                ids = [r["id"] for r in rows]
                if ids:
                    params |= {"after_created": rows[-1]["created_at"], "after_id": ids[-1]}
                    statuses = cur.all("retention_lock_deliveries", {"ids": ids})
                    keep = {r["event_id"] for r in statuses if r["status"] in ACTIVE}
                    ids = [i for i in ids if i not in keep]
                    if ids:
                        cur.run("retention_delete", {"ids": ids})
            if not rows:
                break
            deleted += len(ids)
            progress(len(ids))
            _rest(started, pause, rest)
        _purge_replay_jobs(database, params, pause, rest, stopping)
    return deleted


def _rest(started: float, pause: float, rest: float) -> None:
    wait = max(pause, rest * (time.monotonic() - started))
    if wait > 0:
        time.sleep(wait)


def _purge_replay_jobs(
    database: Database, params: dict, pause: float, rest: float, stopping: Callable[[], bool]
) -> None:
    """Ended bulk-replay jobs past the window go too, their items in bounded batches."""
    with database.transaction() as cur:
        jobs = [r["id"] for r in cur.all("retention_expired_replay_jobs", params)]
    for job_id in jobs:
        job = {"job_id": job_id, "limit": params["limit"]}
        while not stopping():
            started = time.monotonic()
            with database.transaction() as cur:
                cur.run("retention_delete_replay_items", job)
                if cur.raw.rowcount == 0:
                    cur.run("retention_delete_replay_job", job)
                    break
            _rest(started, pause, rest)


def run_exclusive(config: Config, dry_run: bool = False, **kwargs: Any) -> int | None:
    """purge() (or the dry-run count) under the cluster-wide lock; None if another process
    holds it."""
    lock_conn = connect(config.DATABASE_URL, autocommit=True)
    try:
        with lock_conn.cursor() as cur:
            cur.execute(QUERIES["retention_try_lock"], {"lock": LOCK_ID})
            if not cur.fetchone()[0]:
                return None
        database = Database(config.DATABASE_URL, maxconn=1)
        try:
            if dry_run:
                return sum(count(database, config.RETENTION_DAYS).values())
            kwargs.setdefault("batch", config.RETENTION_BATCH_SIZE)
            kwargs.setdefault("pause", config.RETENTION_PAUSE)
            return purge(database, config.RETENTION_DAYS, **kwargs)
        finally:
            database.close()
    finally:
        lock_conn.close()  # releases the lock


def run_forever(config: Config, every: float = EVERY) -> None:
    """A delivery process's background job (a greenlet): every few minutes, take the lock
    if no other process holds it and purge. Killed with its process."""
    time.sleep(random.uniform(0.2, 1.0) * every)  # noqa: S311 - spreads instances apart
    while True:
        try:
            deleted = run_exclusive(config)
            if deleted:
                log.info("retention: deleted %d expired event(s)", deleted)
        except Exception:
            log.exception("retention run failed; trying again later")
        time.sleep(every)
