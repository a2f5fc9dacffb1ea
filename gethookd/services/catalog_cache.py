"""Sources and their routes, cached in each API process and dropped on `gethookd_catalog`.

Catalog writes NOTIFY `gethookd_catalog` in their transaction; a LISTEN connection per
process clears the whole cache on each notification. Entries are used only while that
connection is up (it is cleared when it is lost, since notifications may have been missed)
and expire after TTL seconds as a safety net. A lookup that raced an invalidation is not
cached. Deciding what is stored stays in SQL: the batch insert re-checks the source is
active and reads each destination's `active` from its row, so a stale entry never stores
an event for a deleted source nor misses a pause.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2

from gethookd.db import QUERIES, connect

log = logging.getLogger("gethookd.catalog_cache")

TTL = 10.0
MAX_ENTRIES = 10_000
_RECONNECT_DELAY = 1.0
LOAD_WAIT = 5.0  # longest wait for another request's load of the same key


class _Flight:
    """One load of a key, which other requests for that key wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class CatalogCache:
    def __init__(self, dsn: str, ttl: float = TTL) -> None:
        self.dsn = dsn
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Any]] = {}
        self._loading: dict[str, _Flight] = {}  # key -> its load in progress
        self._lock = threading.Lock()
        self._generation = 0
        self._listening = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._conn: Any = None
        # How many notifications the listener has processed (tests wait on it).
        self.invalidations = 0

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        """The cached value for key, or load() (stored if nothing changed meanwhile).

        One load per key at a time: when an entry expires under load, every request for
        it would otherwise miss at once and each read the source and its routes (with 64
        connections, dozens of transactions every TTL). The others wait for that one load:
        they take its value from the cache, or its error (the database is down: they fail
        together, at once); if the value was not stored (an invalidation came meanwhile),
        one of them loads again.
        """
        self._start()
        while True:
            now = time.monotonic()
            with self._lock:
                hit = self._entries.get(key)
                if hit is not None and hit[0] > now and self._listening:
                    return hit[1]
                generation = self._generation
                flight = self._loading.get(key)
                # Nothing is stored while the LISTEN connection is down: no one to wait for.
                if flight is None or not self._listening:
                    flight = self._loading[key] = _Flight()
                    break
            if not flight.done.wait(LOAD_WAIT):
                flight = _Flight()  # that load is stuck: load too, unregistered
                break
            if flight.error is not None:
                # Its own frames only: re-raised as it is, the one error would gather every
                # waiter's traceback, one after the other (the loader's request logs it whole).
                raise flight.error.with_traceback(None)
        try:
            value = load()
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            with self._lock:
                if self._listening and generation == self._generation:
                    if len(self._entries) >= MAX_ENTRIES:
                        self._entries.clear()
                    self._entries[key] = (now + self.ttl, value)
        finally:
            with self._lock:
                if self._loading.get(key) is flight:
                    del self._loading[key]
            flight.done.set()
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._listen, name="gethookd-catalog-listen", daemon=True
                    )
                    self._thread.start()

    def _set_listening(self, up: bool) -> None:
        with self._lock:
            self._listening = up
            self._entries.clear()
            self._generation += 1

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                self._conn = connect(self.dsn, autocommit=True)
                with self._conn.cursor() as cur:
                    cur.execute(QUERIES["listen_catalog"])
                self._set_listening(True)
                while not self._stop.is_set():
                    if select.select([self._conn], [], [], 0.5)[0]:
                        self._conn.poll()
                        if self._conn.notifies:
                            self._conn.notifies.clear()
                            self.clear()
                            self.invalidations += 1
            except (psycopg2.Error, OSError, ValueError) as exc:
                log.warning("catalog LISTEN connection lost (%s); cache off until back", exc)
            finally:
                self._set_listening(False)
                if self._conn is not None:
                    try:
                        self._conn.close()
                    except psycopg2.Error:
                        pass
                    self._conn = None
            self._stop.wait(_RECONNECT_DELAY)
