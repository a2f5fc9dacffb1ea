"""Group commit: many events and their deliveries in one statement and one transaction.

Request threads of an API process hand a `Pending` each to the process's `Committer` and
wait. Its thread takes whatever has queued while the previous commit ran, writes the batch
with one statement (NOTIFY included, one round trip, one fsync), then wakes each waiter
with its row. A request is answered 202 only after its rows are committed.

At a light load a batch is one event, written at once, and costs what a lone transaction
costs. Under load (the last batch held GATHER_FROM or more), a batch smaller than the last
waits up to GATHER_WAIT for more requests: every statement costs PostgreSQL a fixed ~320 us
besides its ~58 us an event, and the committer its own fixed share, so fewer and larger
batches leave more of the machine to the requests (ingest at 64 connections: +12-18%,
bench/RESULTS.md).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from gethookd import db
from gethookd.db import QUERIES, connect, json_rows
from gethookd.ids import id_text, uuid7s_with_text

log = logging.getLogger("gethookd.committer")

# Largest batch in one statement; more waiting requests go in the next one.
MAX_BATCH = 512
DEDUP_WINDOW = 7 * 86400.0  # seconds; the committer is given DEDUP_WINDOW from the config
DEDUP_CLEANUP_CHANCE = 0.01  # per batch with ids: delete up to DEDUP_CLEANUP_BATCH expired
DEDUP_CLEANUP_BATCH = 500
# A request waits at most this long for its commit (a wedged database), then gets a 503.
WAIT_TIMEOUT = 30.0
# Under load, the longest a batch waits to fill up to the size of the last one (seconds),
# and the size of a last batch that means load.
GATHER_WAIT = 0.001
GATHER_FROM = 4


@dataclass
class Pending:
    """One event to store, as a request hands it over."""

    account_id: uuid.UUID
    direction: str
    source_id: uuid.UUID | None
    event_type: str | None
    headers: dict
    body: bytes
    content_type: str | None
    created_by: str
    # (destination_id, max_attempts, backoff) for each destination a route sends it to
    targets: list[tuple[uuid.UUID, int, str]]
    external_event_id: str | None = None
    replay_of: uuid.UUID | None = None
    # An ingest is stored only if its source is still active when the batch is written.
    check_source: bool = False
    # The provider's own delivery id: stored only if new for its source within the window.
    dedup_key: str | None = None
    # Chosen when the batch is written: time-ordered (gethookd.ids), one clock read and one
    # os.urandom call per batch.
    id: uuid.UUID | None = None
    # For the submitter's after_commit: when the request arrived (time.perf_counter()) and
    # how the event came, for its log line.
    received: float = 0.0
    what: str = ""
    # Filled in by the committer: the stored row (None: the source is gone) or the error.
    result: dict | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)


def store_params(items: list[Pending]) -> dict[str, str]:
    """The rows of `store_events` as three JSON documents (events, deliveries, provider ids).

    One JSON text per batch, encoded by the json module's C encoder, instead of one array
    parameter per column: psycopg2 quotes every array element in Python, which profiled as
    the largest cost of a batch. Bodies travel base64-encoded (decoded in SQL).
    """
    events: list[dict] = []
    deliveries: list[dict] = []
    keys: list[dict] = []
    fresh = uuid7s_with_text(len(items))
    for p, (new_id, new_text) in zip(items, fresh, strict=True):
        if p.id is None:
            p.id, event_id = new_id, new_text
        else:
            event_id = str(p.id)
        events.append(
            {
                "id": event_id,
                "account_id": id_text(p.account_id),
                "direction": p.direction,
                "source_id": id_text(p.source_id) if p.source_id else None,
                "event_type": p.event_type,
                "external_event_id": p.external_event_id,
                "headers": p.headers,
                "body": base64.b64encode(p.body).decode("ascii"),
                "content_type": p.content_type,
                "status": "queued" if p.targets else "accepted",
                "payload_hash": "sha256:" + hashlib.sha256(p.body).hexdigest(),
                "created_by": p.created_by,
                "replay_of": str(p.replay_of) if p.replay_of else None,
                "check_source": p.check_source,
                "keyed": p.dedup_key is not None,
            }
        )
        if p.dedup_key is not None:
            keys.append(
                {"event_id": event_id, "source_id": id_text(p.source_id), "key": p.dedup_key}
            )
        for dest, max_attempts, backoff in p.targets:
            deliveries.append(
                {
                    "event_id": event_id,
                    "destination_id": id_text(dest),
                    "account_id": id_text(p.account_id),
                    "max_attempts": max_attempts,
                    "backoff": backoff,
                }
            )
    return {
        "events": json_rows(events),
        "deliveries": json_rows(deliveries),
        "keys": json_rows(keys),
    }


def store(
    raw_cursor: Any,
    items: list[Pending],
    notify: bool = True,
    dedup_window: float = DEDUP_WINDOW,
) -> list[dict | None]:
    """Run `store_events` (with its NOTIFY in the same statement); per item the stored row,
    a duplicate's answer (`duplicate: True`, the first event's id), or None (source gone).

    On an autocommit connection the two statements form one implicit transaction: both or
    neither. In an open transaction they simply join it.
    """
    # Copies of one provider id within the batch: only the first is written, the others
    # answer as its duplicates (a statement may not claim one key twice).
    writes: list[Pending] = []
    repeats: list[tuple[Pending, Pending]] = []
    first_of: dict[tuple, Pending] = {}
    for p in items:
        if p.dedup_key is not None:
            first = first_of.setdefault((p.source_id, p.dedup_key), p)
            if first is not p:
                repeats.append((p, first))
                continue
        writes.append(p)
    before = ""
    if notify and any(p.targets for p in writes):
        before = QUERIES["notify_deliveries"] + "\n"
    params = store_params(writes)
    params["dedup_window"] = dedup_window
    with raw_cursor.connection.cursor() as cur:  # plain tuples, whatever the caller's factory
        # Prepared on the committer's autocommit connection: planned once, not per batch.
        db.execute(cur, "store_events", params, before)
        rows = {r[0]: r for r in cur.fetchall()}
        lost = [p for p in writes if p.dedup_key is not None and p.id not in rows]
        holders = _holders(cur, lost) if lost else {}
        if params["keys"] != "[]" and random.random() < DEDUP_CLEANUP_CHANCE:
            cur.execute(QUERIES["dedup_delete_expired"], {"limit": DEDUP_CLEANUP_BATCH})
    results: dict[int, dict | None] = {}
    for p in writes:
        row = rows.get(p.id)
        if row is not None:
            results[id(p)] = {"id": row[0], "status": row[1], "deliveries": int(row[2])}
        elif p.dedup_key is not None and (p.source_id, p.dedup_key) in holders:
            results[id(p)] = holders[(p.source_id, p.dedup_key)]
        else:
            results[id(p)] = None  # the source is gone
    for p, first in repeats:
        done = results[id(first)]
        if done is not None and not done.get("duplicate"):
            done = {"id": done["id"], "status": done["status"], "duplicate": True}
        results[id(p)] = done
    return [results[id(p)] for p in items]


def _holders(cur: Any, lost: list[Pending]) -> dict[tuple, dict]:
    """The first event behind each provider id this batch could not take (a new statement:
    under READ COMMITTED it sees the copy that won, which the insert waited for)."""
    cur.execute(
        QUERIES["dedup_holders"],
        {"k_source_id": [p.source_id for p in lost], "k_key": [p.dedup_key for p in lost]},
    )
    return {
        (source_id, key): {"id": event_id, "status": status or "accepted", "duplicate": True}
        for source_id, key, event_id, status in cur.fetchall()
    }


class Committer:
    """One per API process: a thread and its own autocommit connection write the batches."""

    def __init__(
        self,
        dsn: str,
        max_batch: int = MAX_BATCH,
        dedup_window: float = DEDUP_WINDOW,
        after_commit: Callable[[list[Pending]], None] | None = None,
        gather_wait: float = GATHER_WAIT,
    ) -> None:
        """after_commit(items) is given the items of committed batches (each with its
        result): bookkeeping (log lines, metrics) done once per batch instead of once per
        request. It runs in a thread of its own, so that the next batch is not held back
        for it; with many batches committed meanwhile, it is given them together."""
        self.dsn = dsn
        self.after_commit = after_commit
        self._committed: deque[Pending] = deque()  # for after_commit; a deque: two threads
        self._committed_ready = threading.Event()
        self._after_thread: threading.Thread | None = None
        self.dedup_window = dedup_window
        self.max_batch = max_batch
        self.gather_wait = gather_wait
        self._last = 0  # events in the last batch written
        self._queue: list[Pending] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._closed = False

    def submit(self, item: Pending) -> dict | None:
        """Queue one event and wait until its batch is committed (or failed)."""
        with self._cond:
            if self._closed:
                raise psycopg2.OperationalError("the committer is closed")
            if self._thread is None:
                # Started on first use: in the gunicorn worker, after the fork.
                self._thread = threading.Thread(
                    target=self._run, name="gethookd-committer", daemon=True
                )
                self._thread.start()
                if self.after_commit is not None:
                    self._after_thread = threading.Thread(
                        target=self._after_run, name="gethookd-after-commit", daemon=True
                    )
                    self._after_thread.start()
            self._queue.append(item)
            self._cond.notify()
        if not item.done.wait(WAIT_TIMEOUT):
            raise psycopg2.OperationalError("timed out waiting for the database to commit")
        if item.error is not None:
            raise item.error
        return item.result

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._committed_ready.set()
        if self._after_thread is not None:
            self._after_thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            self._last = len(batch)
            try:
                self._commit(batch)
            except BaseException as exc:  # never leave a waiter hanging
                log.exception("group commit failed unexpectedly")
                for item in batch:
                    if not item.done.is_set():
                        item.error = exc
                        item.done.set()
            if self.after_commit is not None:
                self._committed.extend([item for item in batch if item.error is None])
                self._committed_ready.set()
        if self._conn is not None:
            self._conn.close()

    def _next_batch(self) -> list[Pending] | None:
        """The next batch (None once closed and drained); under load, see GATHER_WAIT."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            if self._last >= GATHER_FROM:
                deadline = time.monotonic() + self.gather_wait
                while len(self._queue) < self._last and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            return batch

    def _after_run(self) -> None:
        """Hand committed items to after_commit, until closed and none are left."""
        committed = self._committed
        while True:
            if not committed and self._closed and not self._thread.is_alive():
                return
            self._committed_ready.wait()
            self._committed_ready.clear()
            items = [committed.popleft() for _ in range(len(committed))]
            if items:
                try:
                    self.after_commit(items)
                except Exception:  # bookkeeping must not stop
                    log.exception("after a group commit")

    def _commit(self, batch: list[Pending]) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self.dsn, autocommit=True)
            with self._conn.cursor() as cur:
                results = store(cur, batch, dedup_window=self.dedup_window)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            # The database is unreachable: nothing of this batch is stored; each gets a 503.
            self._drop_connection()
            error = psycopg2.OperationalError(str(exc).strip() or "connection lost")
            for item in batch:
                item.error = error
                item.done.set()
            return
        except psycopg2.Error as exc:
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done.set()
                return
            # One bad event must not fail the others: the statement rolled back as a whole,
            # so write each alone and let each carry its own outcome.
            log.warning("a batch of %d failed (%s); storing each alone", len(batch), exc)
            for item in batch:
                self._commit([item])
            return
        for item, result in zip(batch, results, strict=True):
            item.result = result
            item.done.set()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
        self._conn = None
