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
import psycopg2.pool

psycopg2.extras.register_uuid()
psycopg2.extensions.register_adapter(dict, psycopg2.extras.Json)

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


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
    return queries


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
    """A small pool; `transaction()` commits on success and rolls back on any error."""

    def __init__(self, dsn: str, maxconn: int = 10) -> None:
        self.dsn = dsn
        self._pool = psycopg2.pool.ThreadedConnectionPool(
            0, maxconn, dsn, application_name="gethookd"
        )
        self._slots = threading.BoundedSemaphore(maxconn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Cursor]:
        with self._slots:
            conn = self._pool.getconn()
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
                self._pool.putconn(conn, close=broken or conn.closed != 0)

    def close(self) -> None:
        self._pool.closeall()


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

    def rowcount(self) -> int:
        return self.raw.rowcount
