"""The delivery queue in PostgreSQL: claim with a lease, record outcomes fenced by it.

Every function here runs one short transaction and has committed when it returns, so
no transaction is ever open while a request is on the wire. Outcomes are recorded in
batches (finish_many); hold/release move a destination's waiting deliveries out of the
claim's path and back, inside the caller's transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gethookd.db import Cursor, Database
from gethookd.deliver import Outcome, cap_text


@dataclass(frozen=True)
class Job:
    """One claimed delivery: everything sending needs, and the lease that fences it."""

    delivery_id: Any
    lease_token: Any
    attempt_id: Any
    attempt_number: int
    max_attempts: int
    backoff: str
    event_id: Any
    account_id: Any
    event_type: str | None
    direction: str
    body: bytes
    content_type: str | None
    destination_id: Any
    url: str
    timeout_seconds: int
    signing_secret_enc: str | None
    auth_config_enc: str | None
    custom_headers: dict | None


@dataclass(frozen=True)
class Finished:
    """One attempt's result, ready to be recorded: retry_in is None for a success or a
    final failure (dead letter), else the seconds until the next attempt."""

    job: Job
    result: Outcome
    retry_in: float | None

    @property
    def status(self) -> str:
        if self.result.ok:
            return "succeeded"
        return "dead" if self.retry_in is None else "pending"


def claim(db: Database, limit: int, lease_seconds: float) -> list[Job]:
    """Lease up to `limit` due deliveries (or ones whose lease expired) and open an attempt
    for each; an expired lease's unfinished attempt is recorded as cancelled."""
    return claim_batch(db, limit, lease_seconds)[0]


def claim_batch(db: Database, limit: int, lease_seconds: float) -> tuple[list[Job], int]:
    """claim(), and how many due deliveries it parked as 'held' on the way (their
    destination does not accept deliveries now): a claim that parked some may have
    come back short although more is due. One statement, one round trip."""
    if limit <= 0:
        return [], 0
    with _single_statement(db) as cur:
        rows = cur.all("claim_deliveries", {"limit": limit, "lease_seconds": lease_seconds})
    jobs = []
    parked = 0
    for row in rows:
        parked = row.pop("parked")
        if row["delivery_id"] is None:
            continue
        row["body"] = bytes(row["body"])
        jobs.append(Job(**row))
    return jobs, parked


def finish_many(db: Database, batch: list[Finished]) -> list[str | None]:
    """Record a batch of attempts in one transaction (one round trip): for each, the
    delivery's new status ('succeeded', 'pending' for a retry, 'dead', or 'cancelled' when
    the event was replayed meanwhile), or None if its lease was lost and nothing of it was
    changed. Notifies the delivery processes if a retry is due at once."""
    if not batch:
        return []
    params = {
        "event_ids": sorted({f.job.event_id for f in batch}),
        "delivery_ids": [f.job.delivery_id for f in batch],
        "lease_tokens": [f.job.lease_token for f in batch],
        "attempt_ids": [f.job.attempt_id for f in batch],
        "statuses": [f.status for f in batch],
        "retry_ins": [max(0.0, f.retry_in or 0.0) for f in batch],
        "outcomes": [f.result.outcome for f in batch],
        "response_statuses": [f.result.response_status for f in batch],
        "response_bodies": [cap_text(f.result.response_body) for f in batch],
        "error_messages": [cap_text(f.result.error_message) for f in batch],
        "latencies": [f.result.latency_ms for f in batch],
    }
    with _single_statement(db) as cur:
        rows = cur.all("finish_deliveries", params)
    got = {row["delivery_id"]: row["status"] for row in rows}
    statuses = [got.get(f.job.delivery_id) for f in batch]
    if any(s == "pending" and not f.retry_in for s, f in zip(statuses, batch, strict=True)):
        with _single_statement(db) as cur:
            cur.run("notify_deliveries")  # due at once: let any delivery process take it
    return statuses


def finish(db: Database, job: Job, result: Outcome, retry_in: float | None) -> str | None:
    """Record one attempt (see finish_many); None if the lease was lost."""
    return finish_many(db, [Finished(job, result, retry_in)])[0]


def release(db: Database, job: Job, reason: str, latency_ms: int = 0) -> str | None:
    """Give a lease back before it expires (the process is stopping mid-send): the attempt
    is recorded as cancelled and the delivery is due again at once. None if the lease was
    already gone (the attempt was recorded after all, or another worker took it over)."""
    return finish(db, job, released(job, reason, latency_ms).result, retry_in=0.0)


def released(job: Job, reason: str, latency_ms: int = 0) -> Finished:
    """The result that gives a lease back: a cancelled attempt, due again at once."""
    return Finished(job, Outcome("cancelled", None, None, reason, latency_ms), 0.0)


def hold_destination(cur: Cursor, destination_id: Any) -> int:
    """In the transaction that made a destination stop accepting deliveries: move its
    waiting deliveries out of the claim's path ('held'). How many."""
    cur.run("hold_destination_deliveries", {"destination_id": destination_id})
    return cur.raw.rowcount


def release_destination(cur: Cursor, destination_id: Any) -> int:
    """In the transaction that made a destination accept deliveries again: its held
    deliveries wait in the claim's path again, keeping their due times, and the delivery
    processes are woken. Nothing if another reason to hold remains. How many."""
    cur.run("release_held_deliveries", {"destination_id": destination_id})
    count = cur.raw.rowcount
    if count:
        cur.run("notify_deliveries")
    return count


@contextlib.contextmanager
def _single_statement(db: Database) -> Iterator[Cursor]:
    """A cursor whose one execute() is its own transaction (several statements sent in one
    string run as one implicit transaction block): no BEGIN/COMMIT round trips."""
    with db.transaction() as cur:
        conn = cur.raw.connection
        conn.autocommit = True
        try:
            yield cur
        finally:
            if not conn.closed:
                conn.autocommit = False
