"""Events in and out: ingest, publish, list, replay, stats.

An event and the deliveries it needs are written in one transaction, so an event
is either fully queued or not stored at all; NOTIFY wakes the delivery processes
when it commits.
"""

from __future__ import annotations

import base64
import collections
import fnmatch
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg2.errors

from gethookd import logs, metrics, verify
from gethookd.db import Cursor
from gethookd.errors import NotFound, TooLarge, Unauthorized
from gethookd.ids import id_text
from gethookd.services.base import Service
from gethookd.services.catalog import open_verification_config
from gethookd.services.catalog_cache import CatalogCache
from gethookd.services.committer import Committer, Pending, store
from gethookd.services.event_filter import EventFilter, encode_cursor, page_params

log = logging.getLogger("gethookd.events")

# Headers that name the event type, by provider; first match wins.
_EVENT_TYPE_HEADERS = (
    "x-event-type",
    "x-github-event",
    "x-shopify-topic",
    "x-gitlab-event",
    "x-gethook-event-type",
)
# Request headers never stored with an event (hop-by-hop, or credentials meant for us).
_DROP_HEADERS = {"authorization", "cookie", "connection", "transfer-encoding", "content-length"}


class Events(Service):
    # Set by start_batching() in API processes; otherwise each ingest is its own transaction.
    committer: Committer | None = None
    catalog_cache: CatalogCache | None = None

    def start_batching(self) -> None:
        """Group commit and the cached catalog, for a process serving many ingests at once."""
        self.committer = Committer(
            self.config.DATABASE_URL,
            dedup_window=self.config.DEDUP_WINDOW,
            after_commit=_after_ingests,
        )
        self.catalog_cache = CatalogCache(self.config.DATABASE_URL)

    def stop_batching(self) -> None:
        if self.committer is not None:
            self.committer.close()
        if self.catalog_cache is not None:
            self.catalog_cache.close()
        self.committer = self.catalog_cache = None

    def ingest(self, token: str, body: bytes, headers: dict[str, str]) -> dict:
        """Store an inbound webhook and queue its deliveries; committed before the 202."""
        started = time.perf_counter()
        if len(body) > self.config.MAX_INGEST_BYTES:
            metrics.EVENTS_RECEIVED.labels("unknown", "too_large").inc()
            raise TooLarge(
                f"webhook body exceeds MAX_INGEST_BYTES ({self.config.MAX_INGEST_BYTES})"
            )
        lower = {k.lower(): v for k, v in headers.items()}
        if self.catalog_cache is not None:
            source = self.catalog_cache.get(token, lambda: self._ingest_source(token))
        else:
            source = self._ingest_source(token)
        if source is None:
            metrics.EVENTS_RECEIVED.labels("unknown", "unknown_source").inc()
            raise NotFound("no active source has this ingest URL; check the path token")
        # Verified before anything is written (CPU only, no database work).
        try:
            verify.verify_request(
                source.auth_mode, source.provider, source.config, lower, body, time.time()
            )
        except verify.VerificationFailed as exc:
            log.warning("source %s: signature verification failed: %s", source.id, exc.reason)
            metrics.EVENTS_RECEIVED.labels(str(source.id), "refused_verification").inc()
            raise Unauthorized(f"signature verification failed: {exc.reason}") from None
        event_type = verify.event_type(source.provider, lower, body) or _event_type(lower, body)
        # The provider's own delivery id, read only now that the request verified (so a forged
        # copy cannot burn an id); the committer stores the event only if the id is new.
        dedup_key = verify.delivery_id(
            source.auth_mode, source.provider, source.config, lower, body
        )
        pending = Pending(
            account_id=source.account_id,
            direction="inbound",
            source_id=source.id,
            event_type=event_type,
            headers={k: v for k, v in lower.items() if k not in source.drop},
            body=body,
            content_type=lower.get("content-type"),
            created_by=f"source:{id_text(source.id)}",
            targets=_targets(source.routes, event_type),
            check_source=True,
            dedup_key=dedup_key,
            received=started,
            what=f"received from source {id_text(source.id)} ({len(body)} bytes)",
        )
        if self.committer is not None:
            event = self.committer.submit(pending)  # logged and counted by _after_ingests
        else:
            with self.db.transaction() as cur:
                [event] = store(cur.raw, [pending], dedup_window=self.config.DEDUP_WINDOW)
            pending.result = event
            _after_ingests([pending])
        if event is None:  # deleted after it was read: nothing stored
            metrics.EVENTS_RECEIVED.labels("unknown", "unknown_source").inc()
            raise NotFound("no active source has this ingest URL; check the path token")
        return event

    def _ingest_source(self, token: str) -> IngestSource | None:
        """What ingest needs of a source, read once per cache entry (config opened)."""
        with self.db.transaction() as cur:
            row = cur.one("source_by_token", {"token": token})
            if row is None or row["status"] != "active":
                return None
            routes = cur.all("routes_for_source", {"source_id": row["id"]})
        config = open_verification_config(self.box, row)
        return IngestSource(
            id=row["id"],
            account_id=row["account_id"],
            auth_mode=row["auth_mode"],
            provider=row["provider"],
            config=config,
            drop=frozenset(_DROP_HEADERS | verify.credential_headers(row["auth_mode"], config)),
            routes=routes,
        )

    def publish(
        self,
        account_id: uuid.UUID,
        payload: str,
        event_type: str | None = None,
        external_event_id: str | None = None,
    ) -> tuple[dict, bool]:
        """Fan an application's event out to matching routes; (event, created).

        A repeated external_event_id returns the first event and queues nothing.
        """
        if external_event_id:
            with self.db.transaction() as cur:
                found = cur.one(
                    "outbound_by_external_id",
                    {"account_id": account_id, "external_event_id": external_event_id},
                )
            if found:
                metrics.EVENTS_PUBLISHED.labels("duplicate").inc()
                return found, False
        body = payload.encode()
        try:
            with self.db.transaction() as cur:
                routes = cur.all("routes_for_outbound", {"account_id": account_id})
                event = self._store(
                    cur,
                    routes,
                    account_id=account_id,
                    direction="outbound",
                    source_id=None,
                    event_type=event_type,
                    external_event_id=external_event_id,
                    headers={},
                    body=body,
                    content_type=_guess_content_type(body),
                    created_by="api",
                )
            _log_stored(event, f"published as {event_type or 'an untyped event'}")
            metrics.EVENTS_PUBLISHED.labels("accepted").inc()
            return event, True
        except psycopg2.errors.UniqueViolation:
            # A concurrent publish with the same external_event_id won the race.
            with self.db.transaction() as cur:
                found = cur.one(
                    "outbound_by_external_id",
                    {"account_id": account_id, "external_event_id": external_event_id},
                )
            metrics.EVENTS_PUBLISHED.labels("duplicate").inc()
            return found, False

    def replay(self, account_id: uuid.UUID, event_id: uuid.UUID, direction: str | None) -> dict:
        """A new event with the original's body and headers, routed and queued again."""
        with self.db.transaction() as cur:
            replay = self.replay_in(cur, account_id, [event_id], direction).get(event_id)
        if replay is None:
            raise NotFound(f"{direction or ''} event {event_id} not found".lstrip())
        _log_stored(replay, f"replays event {event_id}")
        return {
            "original_event_id": event_id,
            "replay_event_id": replay["id"],
            "status": replay["status"],
        }

    def replay_in(
        self,
        cur: Cursor,
        account_id: uuid.UUID,
        event_ids: list[uuid.UUID],
        direction: str | None = None,
        to_destination_id: uuid.UUID | None = None,
    ) -> dict[uuid.UUID, dict | None]:
        """replay() of many events in the caller's transaction (bulk replay runs a batch in
        one): original id -> the stored replay row. An original not found (or not of this
        direction) is left out. With to_destination_id only the routes to it count, only its
        waiting delivery of the original is superseded, and an original with no route there
        maps to None (nothing stored)."""
        originals = [
            e
            for e in cur.all("lock_events_for_replay", {"ids": event_ids, "account_id": account_id})
            if not direction or e["direction"] == direction
        ]
        routes: dict[Any, list[dict]] = {}  # source id (None: outbound) -> its routes
        pending, skipped = [], []
        for original in originals:
            source = original["source_id"] if original["direction"] == "inbound" else None
            if source not in routes:
                if original["direction"] == "inbound":
                    found = cur.all("routes_for_source", {"source_id": source})
                else:
                    found = cur.all("routes_for_outbound", {"account_id": account_id})
                routes[source] = [
                    r
                    for r in found
                    if to_destination_id is None or r["destination_id"] == to_destination_id
                ]
            targets = _targets(routes[source], original["event_type"])
            if to_destination_id is not None and not targets:
                skipped.append(original["id"])
                continue
            pending.append(
                Pending(
                    account_id=account_id,
                    direction=original["direction"],
                    source_id=original["source_id"],
                    event_type=original["event_type"],
                    external_event_id=original["external_event_id"],
                    headers=original["headers"],
                    body=bytes(original["body"]),
                    content_type=original["content_type"],
                    created_by=f"replay:{original['id']}",
                    replay_of=original["id"],
                    targets=targets,
                )
            )
        stored = store(cur.raw, pending) if pending else []
        done = [p.replay_of for p in pending]
        if done and to_destination_id is None:
            cur.run("mark_replayed", {"ids": done})
        elif done:
            cur.run("mark_replayed_to", {"ids": done, "destination_id": to_destination_id})
        result: dict[uuid.UUID, dict | None] = dict.fromkeys(skipped)
        result.update(zip(done, stored, strict=True))
        return result

    def _store(self, cur: Cursor, routes: list[dict], **event: Any) -> dict:
        """The event and one delivery per matching destination, in the caller's transaction."""
        pending = Pending(targets=_targets(routes, event["event_type"]), **event)
        [row] = store(cur.raw, [pending])
        return row

    def list_events(
        self,
        account_id: uuid.UUID,
        limit: int,
        offset: int = 0,
        event_filter: EventFilter | None = None,
        cursor: str | None = None,
        include_total: bool = True,
    ) -> dict:
        """A page, newest first; next_cursor (keyset) is null on the last page. total counts
        every match (slow at millions of rows): include_total=False skips it (null)."""
        event_filter = event_filter or EventFilter()
        params = page_params(event_filter, account_id, limit + 1, offset, cursor)
        with self.db.transaction() as cur:
            items = cur.all("filter_page", params)
            total = (
                cur.one("filter_count", {**params, "upto": None})["total"]
                if include_total
                else None
            )
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = encode_cursor(items[-1]["created_at"], items[-1]["id"])
        return {
            "items": [event_view(e) for e in items],
            "total": total,
            "next_cursor": next_cursor,
        }

    def get_event(
        self, account_id: uuid.UUID, event_id: uuid.UUID, direction: str | None = None
    ) -> dict:
        with self.db.transaction() as cur:
            event = cur.one("get_event", {"id": event_id, "account_id": account_id})
            if event is None or (direction and event["direction"] != direction):
                raise NotFound(f"event {event_id} not found")
            attempts = cur.all("list_attempts", {"event_id": event_id})
        # The exact bytes too: `body` is text, and a binary body does not survive as text.
        raw = base64.b64encode(bytes(event["body"])).decode("ascii")
        return {"event": event_view(event), "attempts": attempts, "body_base64": raw}

    def stats(self, account_id: uuid.UUID) -> dict:
        with self.db.transaction() as cur:
            by_status = cur.all("stats_by_status", {"account_id": account_id})
            daily = cur.all("stats_daily", {"account_id": account_id})
        return {"by_status": by_status, "daily": daily}

    def platform_stats(self) -> dict:
        with self.db.transaction() as cur:
            row = cur.one("platform_stats")
        finished = row.pop("finished")
        successes = row.pop("successes")
        row["success_rate_pct"] = round(100.0 * successes / finished, 2) if finished else 0.0
        return row

    def ready(self) -> bool:
        try:
            with self.db.transaction() as cur:
                cur.raw.execute("SELECT 1")
            return True
        except psycopg2.Error:
            return False


def _after_ingests(items: list[Pending]) -> None:
    """A committed batch of ingests: a line per event, in one write; counted per source."""
    lines = []
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    seconds = []
    now = time.perf_counter()
    for item in items:
        event = item.result
        if event is None:  # the source went away: that request counts its own 404
            continue
        source = id_text(item.source_id)
        seconds.append(now - item.received)
        if event.get("duplicate"):
            outcomes[source, "duplicate"] += 1
            lines.append(
                (
                    logging.INFO,
                    "source %s: webhook %r is a duplicate of event %s; not stored",
                    (source, item.dedup_key, event["id"]),
                    None,
                )
            )
        else:
            outcomes[source, "accepted"] += 1
            lines.append((logging.INFO, *_stored_line(event, item.what), None))
    logs.log_many(log, lines)
    for (source, outcome), count in outcomes.items():
        metrics.EVENTS_RECEIVED.labels(source, outcome).inc(count)
    metrics.observe_many(metrics.INGEST_SECONDS, seconds)


def _log_stored(event: dict, what: str) -> None:
    """One line per stored event, after its transaction committed."""
    log.info(*_stored_line(event, what))


def _stored_line(event: dict, what: str) -> tuple:
    if event["deliveries"]:
        return "event %s %s: queued for %d destination(s)", (event["id"], what, event["deliveries"])
    return "event %s %s: accepted, no route matches", (event["id"], what)


def matches(pattern: str | None, event_type: str | None) -> bool:
    """Route filter: no pattern or `*` takes everything; otherwise a glob on event_type."""
    if not pattern or pattern == "*":
        return True
    return event_type is not None and fnmatch.fnmatchcase(event_type, pattern)


def _event_type(headers: dict[str, str], body: bytes) -> str | None:
    for name in _EVENT_TYPE_HEADERS:
        if headers.get(name):
            return headers[name][:200]
    if body[:1] == b"{" and "json" in headers.get("content-type", ""):
        try:
            value = json.loads(body).get("type")
        except (ValueError, AttributeError):
            return None
        if isinstance(value, str):
            return value[:200]
    return None


def _guess_content_type(body: bytes) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


def as_now(row: dict) -> dict:
    """An event row read with live_status and live_attempts (see get_event in
    sql/events.sql), with its status and attempts_count as they are now: the claim does not
    write them."""
    row["status"] = row.pop("live_status")
    row["attempts_count"] = row.pop("live_attempts")
    return row


def event_view(row: dict) -> dict:
    """The event as the API shows it, its status and attempts as they are now."""
    as_now(row)
    row["body"] = bytes(row["body"]).decode("utf-8", errors="replace")
    row.pop("content_type", None)
    return row


@dataclass(frozen=True)
class IngestSource:
    """A source as ingest uses it, with its verification config opened and its routes."""

    id: uuid.UUID
    account_id: uuid.UUID
    auth_mode: str
    provider: str | None
    config: dict
    drop: frozenset[str]
    routes: list[dict]


def _targets(routes: list[dict], event_type: str | None) -> list[tuple[uuid.UUID, int, str]]:
    """One delivery per matching destination, with the strictest of its routes' policies."""
    best: dict[Any, dict] = {}
    for route in routes:
        if not matches(route["event_type_pattern"], event_type):
            continue
        seen = best.get(route["destination_id"])
        if seen is None or route["max_attempts"] > seen["max_attempts"]:
            best[route["destination_id"]] = route
    return [(dest, r["max_attempts"], r["backoff"]) for dest, r in best.items()]
