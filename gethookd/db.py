"""Connections, transactions and the named-query loader.

All SQL lives in gethookd/sql/*.sql as blocks headed `-- name: query_name`; this
module loads them once and runs them. Nothing here knows about HTTP or webhooks.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

psycopg2.extras.register_uuid()
psycopg2.extensions.register_adapter(dict, psycopg2.extras.Json)

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^[ \t]*--\s*include:\s*(\w+)\s*$", re.MULTILINE)


def _load_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for entry in sorted(resources.files("gethookd.sql").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        parts = _NAME.split(entry.read_text())
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise RuntimeError(f"query {name} is defined twice")
            queries[name] = body.strip()
    # `-- include: NAME` stands for that named block, so a shared WHERE clause is written once.
    return {
        name: _INCLUDE.sub(lambda m: queries[m.group(1)], body) for name, body in queries.items()
    }


QUERIES = _load_queries()


def make_cooperative() -> None:
    """Let psycopg2 yield to other greenlets while it waits on the socket (gevent only)."""
    from gevent.socket import wait_read, wait_write

    def wait(conn: Any, timeout: float | None = None) -> None:
        while True:
            state = conn.poll()
            if state == psycopg2.extensions.POLL_OK:
                return
            if state == psycopg2.extensions.POLL_READ:
                wait_read(conn.fileno(), timeout=timeout)
            elif state == psycopg2.extensions.POLL_WRITE:
                wait_write(conn.fileno(), timeout=timeout)
            else:
                raise psycopg2.OperationalError(f"bad poll state {state}")

    psycopg2.extensions.set_wait_callback(wait)


def connect(dsn: str, *, autocommit: bool = False) -> Any:
    conn = psycopg2.connect(dsn, application_name="gethookd", connect_timeout=10)
    conn.autocommit = autocommit
    return conn


class Database:
    """A pool that keeps its idle connections; `transaction()` commits or rolls back.

    (psycopg2's own pools close every connection above `minconn` when it is returned,
    which costs a new connection per transaction.) A connection that failed is dropped,
    so one database restart costs each pooled connection one failed transaction.
    """

    def __init__(self, dsn: str, maxconn: int = 10) -> None:
        self.dsn = dsn
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(maxconn)

    def _take(self) -> Any:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
        return connect(self.dsn)

    def _give_back(self, conn: Any, broken: bool) -> None:
        if broken or conn.closed:
            try:
                conn.close()
            except psycopg2.Error:
                pass
            return
        with self._lock:
            self._idle.append(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Cursor]:
        with self._slots:
            conn = self._take()
            broken = False
            try:
                with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                    yield Cursor(cur)
                conn.commit()
            except BaseException:
                broken = conn.closed != 0
                if not broken:
                    try:
                        conn.rollback()
                    except psycopg2.Error:
                        broken = True
                raise
            finally:
                self._give_back(conn, broken)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Cursor:
    """Runs named queries; rows come back as plain dicts."""

    def __init__(self, cur: Any) -> None:
        self.raw = cur

    def run(self, name: str, params: Any = None) -> None:
        self.raw.execute(QUERIES[name], params)

    def one(self, name: str, params: Any = None) -> dict | None:
        self.raw.execute(QUERIES[name], params)
        row = self.raw.fetchone()
        return dict(row) if row is not None else None

    def all(self, name: str, params: Any = None) -> list[dict]:
        self.raw.execute(QUERIES[name], params)
        return [dict(r) for r in self.raw.fetchall()]
