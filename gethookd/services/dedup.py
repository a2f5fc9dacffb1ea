"""Inbound deduplication on the provider's own delivery id, inside the ingest transaction.

`claim` runs after the request verified and before the event is written: it takes the id
for this source (atomically, so concurrent copies make one event; an expired row is taken
over) or reports the event the first copy stored. `record` ties the claim to the stored
event. Both work on one row and a cursor, so a batch writer can call them per request within
its own transaction.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from gethookd import verify
from gethookd.db import Cursor

log = logging.getLogger("gethookd.events")

CLEANUP_CHANCE = 0.01  # per claim; each cleanup deletes at most CLEANUP_BATCH expired rows
CLEANUP_BATCH = 500


@dataclass(frozen=True)
class Claim:
    source_id: object
    key: str
    duplicate_of: dict | None  # the first event's answer; None: this request took the key


def claim(
    cur: Cursor,
    window_seconds: float,
    source: dict,
    config: dict,
    headers: dict[str, str],
    body: bytes,
) -> Claim | None:
    """None when the request carries no delivery id (nothing to deduplicate on)."""
    key = verify.delivery_id(source["auth_mode"], source["provider"], config, headers, body)
    if key is None:
        return None
    if random.random() < CLEANUP_CHANCE:
        cur.run("dedup_delete_expired", {"limit": CLEANUP_BATCH})
    params = {"source_id": source["id"], "dedup_key": key, "window": window_seconds}
    for _ in range(3):  # a row seen expired may be deleted or taken over meanwhile: look again
        if cur.one("dedup_claim", params) is not None:
            return Claim(source["id"], key, None)
        first = cur.one("dedup_find", params)
        if first is None:
            continue  # deleted since the claim saw it: claim again
        if not first["expired"]:
            break
        if cur.one("dedup_take_expired", params) is not None:
            return Claim(source["id"], key, None)
    else:
        # Three times in a row the key changed hands between two statements: treat as a repeat
        # (the safe side: nothing stored twice); the provider retries later.
        first = cur.one("dedup_find", params)
    first = first or {}
    answer = {"id": first.get("id"), "status": first.get("status") or "accepted", "duplicate": True}
    log.info(
        "source %s: webhook %r is a duplicate of event %s; not stored",
        source["id"],
        key,
        answer["id"],
    )
    return Claim(source["id"], key, answer)


def record(cur: Cursor, claimed: Claim | None, event_id: object) -> None:
    """Tie a key this request took to the event it stored (no-op without a claim)."""
    if claimed is not None and claimed.duplicate_of is None:
        cur.run(
            "dedup_record_event",
            {"source_id": claimed.source_id, "dedup_key": claimed.key, "event_id": event_id},
        )
