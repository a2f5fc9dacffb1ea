"""The delivery queue in PostgreSQL: claim with a lease, record outcomes fenced by it.

Every function here runs one short transaction and has committed when it returns, so
no transaction is ever open while a request is on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gethookd.db import Database
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


def claim(db: Database, limit: int, lease_seconds: float) -> list[Job]:
    """Lease up to `limit` due deliveries (or ones whose lease expired) and open an attempt
    for each; an expired lease's unfinished attempt is recorded as cancelled."""
    if limit <= 0:
        return []
    with db.transaction() as cur:
        rows = cur.all("claim_deliveries", {"limit": limit, "lease_seconds": lease_seconds})
    for row in rows:
        row["body"] = bytes(row["body"])
    return [Job(**row) for row in rows]


def finish(db: Database, job: Job, result: Outcome, retry_in: float | None) -> str | None:
    """Record the attempt and schedule the next step; the delivery's new status
    ('succeeded', 'pending' for a retry, 'dead', or 'cancelled' when the event was replayed
    meanwhile), or None if the lease was lost and nothing was changed.

    retry_in is None for a success or a final failure (dead letter).
    """
    if result.ok:
        status = "succeeded"
    elif retry_in is None:
        status = "dead"
    else:
        status = "pending"
    with db.transaction() as cur:
        row = cur.one(
            "finish_delivery",
            {
                "event_id": job.event_id,
                "status": status,
                "retry_in": max(0.0, retry_in or 0.0),
                "delivery_id": job.delivery_id,
                "lease_token": job.lease_token,
                "attempt_id": job.attempt_id,
                "outcome": result.outcome,
                "response_status": result.response_status,
                "response_body": cap_text(result.response_body),
                "error_message": cap_text(result.error_message),
                "latency_ms": result.latency_ms,
            },
        )
        if row is None:
            return None
        if row["status"] == "pending" and not retry_in:
            cur.run("notify_deliveries")  # due at once: let any delivery process take it
    return row["status"]


def release(db: Database, job: Job, reason: str, latency_ms: int = 0) -> str | None:
    """Give a lease back before it expires (the process is stopping mid-send): the attempt
    is recorded as cancelled and the delivery is due again at once. None if the lease was
    already gone (the attempt was recorded after all, or another worker took it over)."""
    return finish(db, job, Outcome("cancelled", None, None, reason, latency_ms), retry_in=0.0)
