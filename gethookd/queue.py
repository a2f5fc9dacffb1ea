"""The delivery queue in PostgreSQL: claim with a lease, record outcomes fenced by it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from gethookd.db import Database
from gethookd.deliver import RESPONSE_BODY_LIMIT, Outcome


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
    """Committed before it returns, so no transaction stays open while sending."""
    if limit <= 0:
        return []
    with db.transaction() as cur:
        rows = cur.all("claim_deliveries", {"limit": limit, "lease_seconds": lease_seconds})
    for row in rows:
        row["body"] = bytes(row["body"])
    return [Job(**row) for row in rows]


def finish(db: Database, job: Job, result: Outcome, retry_in: float | None) -> str | None:
    """Record the attempt and schedule the next step; None if the lease was lost.

    retry_in is None for a success or a final failure (dead letter).
    """
    if result.ok:
        status, next_at = "succeeded", None
    elif retry_in is None:
        status, next_at = "dead", None
    else:
        status = "pending"
        next_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=retry_in)
    with db.transaction() as cur:
        fenced = cur.one(
            "finish_delivery",
            {
                "status": status,
                "next_attempt_at": next_at,
                "delivery_id": job.delivery_id,
                "lease_token": job.lease_token,
            },
        )
        if fenced is None:
            return None
        body = result.response_body
        cur.run(
            "finish_attempt",
            {
                "attempt_id": job.attempt_id,
                "outcome": result.outcome,
                "response_status": result.response_status,
                "response_body": body[:RESPONSE_BODY_LIMIT] if body else body,
                "error_message": result.error_message,
                "latency_ms": result.latency_ms,
            },
        )
        cur.run("lock_event", {"event_id": job.event_id})
        cur.run("refresh_event_status", {"event_id": job.event_id})
    return status
