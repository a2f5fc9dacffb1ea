"""Connections, transactions and the named-query loader.

All SQL lives in gethookd/sql/*.sql as blocks headed `-- name: query_name`; this
module loads them once and runs them. Nothing here knows about HTTP or webhooks.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import weakref
from collections.abc import Iterator
from importlib import resources
from typing import Any

import psycopg2
import psycopg2.errors
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


# -- server-side prepared statements, for the hot statements -----------------------------

# A psycopg2 placeholder and the cast written after it, if any.
_PLACEHOLDER = re.compile(r"%\((\w+)\)s(::\w+(?:\[\])?)?")


def split_statements(sql: str) -> list[str]:
    """The statements of a query text, split on `;` outside quotes; comments dropped."""
    parts, current, i, quoted = [], [], 0, False
    while i < len(sql):
        ch = sql[i]
        if quoted:
            current.append(ch)
            quoted = ch != "'"
        elif ch == "'":
            current.append(ch)
            quoted = True
        elif sql.startswith("--", i):
            i = sql.find("\n", i)
            if i < 0:
                break
            current.append("\n")
        elif ch == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


class Prepared:
    """A named query as server-side prepared statements: PostgreSQL parses and plans each
    statement once per connection instead of once per call. For the group commit's insert,
    planning was half of its cost in a batch of one (bench/RESULTS.md).

    A generic plan is made from the table sizes of its day and kept until the next
    ANALYZE: one made while a table was nearly empty goes on treating it as such (a
    prepared claim walked every due row after a burst). So a statement is prepared again
    after a while: REPREPARE_FIRST seconds after it was first prepared on a connection,
    then after twice as long each time, up to REPREPARE_AFTER (a process that starts on
    empty tables and meets a backlog has its plans remade within a second). The queue's
    statements also read every table by key (sql/queue.sql), run with scans ruled out and
    their generic plans forced (queue.QUEUE_PLANS), and a value that would change the
    plan's shape is passed apart (the claim's `uncapped`).

    Each `%(name)s` becomes `$n`; the EXECUTE passes the value with the cast the query
    wrote after it (a list is sent as ARRAY[...], which only an explicit cast makes uuid[]).
    """

    def __init__(self, name: str, sql: str) -> None:
        statements = split_statements(sql)
        self.prepare: list[str] = []
        self.handles: list[str] = []
        executes: list[str] = []
        for index, statement in enumerate(statements):
            handle = f"gethookd_{name}" + (f"_{index}" if len(statements) > 1 else "")
            order: list[str] = []
            casts: dict[str, str] = {}

            def number(match: re.Match, order: list = order, casts: dict = casts) -> str:
                param, cast = match.group(1), match.group(2) or ""
                if param not in order:
                    order.append(param)
                if cast:
                    casts.setdefault(param, cast)
                return f"${order.index(param) + 1}{cast}"

            body = _PLACEHOLDER.sub(number, statement)
            self.handles.append(handle)
            self.prepare.append(f"PREPARE {handle} AS {body}")
            args = ", ".join(f"%({p})s{casts.get(p, '')}" for p in order)
            executes.append(f"EXECUTE {handle}({args})" if order else f"EXECUTE {handle}")
        self.execute = ";\n".join(executes)


def json_rows(rows: list) -> str:
    """Rows as one JSON text, for a statement to read with json_to_recordset.

    A list parameter is adapted element by element in Python and sent as ARRAY[...], which
    PostgreSQL parses element by element too: a finish of 50 deliveries (eleven such lists)
    cost ~830 us of Python and ~880 us of PostgreSQL's CPU in its parameters alone, one
    JSON text ~330 and ~400 (bench/RESULTS.md). PostgreSQL's json cannot hold NUL in
    text: any are dropped.
    """
    text = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
    if "\\u0000" in text:  # rare
        text = json.dumps(_without_nul(rows), separators=(",", ":"), ensure_ascii=False)
    return text


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def plain_array(values: Any) -> str:
    """An array literal ('{a,b}') of values that need no quoting (uuids, numbers), for a
    `%(name)s::uuid[]` parameter: one string constant to PostgreSQL instead of an
    ARRAY[...] of one per element (see json_rows)."""
    return "{" + ",".join(map(str, values)) + "}"


_STATEMENTS: dict[str, Prepared] = {}
# Per connection: the queries prepared on it, each with when (monotonic) and how long its
# plan is kept, or None when unknown (after an error).
_PREPARED_ON: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# A prepared statement is prepared again once older than its keep: its generic plan was
# made from the table sizes of its day (a plain statement is planned from the current ones
# each time). The first keep is short, each next one twice as long, up to REPREPARE_AFTER.
REPREPARE_FIRST = 1.0
REPREPARE_AFTER = 10.0


def execute(cur: Any, name: str, params: Any, before: str = "") -> None:
    """Run a named query (after the statements `before`, in the same round trip), prepared
    on an autocommit connection, as plain text in an open transaction.

    Autocommit only, because a failed call must leave nothing behind: if the server lost
    the statement (a pooler such as PgBouncer moved us to another server connection, or a
    DISCARD ALL), the call is sent again with its PREPARE, in the same implicit transaction.
    """
    conn = cur.connection
    if not conn.autocommit:
        cur.execute(before + QUERIES[name], params)
        return
    statement = _STATEMENTS.get(name)
    if statement is None:
        statement = _STATEMENTS[name] = Prepared(name, QUERIES[name])
    known = _PREPARED_ON.get(conn)
    now = time.monotonic()
    for attempt in range(2):
        if known is None:  # unknown state: start from none (PREPARE of an existing name fails)
            reset = "DEALLOCATE ALL;\n"
        elif name not in known:
            reset = ""
        elif now - known[name][0] >= min(known[name][1], REPREPARE_AFTER):
            reset = "".join(f"DEALLOCATE {handle};\n" for handle in statement.handles)
        else:
            reset = None
        if reset is None:
            text = before + statement.execute
        else:
            text = reset + before + ";\n".join([*statement.prepare, statement.execute])
        try:
            cur.execute(text, params)
        except psycopg2.errors.InvalidSqlStatementName:
            _PREPARED_ON[conn] = known = None
            if attempt:
                raise
            continue
        except BaseException:
            _PREPARED_ON.pop(conn, None)  # whatever ran, the next call starts afresh
            raise
        if reset is not None:
            if known is None:
                known = _PREPARED_ON[conn] = {}
            keep = known[name][1] * 2 if name in known else REPREPARE_FIRST
            known[name] = (now, min(keep, REPREPARE_AFTER))
        return


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

    def prepared_tuples(
        self, name: str, params: Any = None, before: str = ""
    ) -> tuple[list[str], list[tuple]]:
        """A prepared statement on an autocommit connection (see execute): the rows as
        tuples, with the column names. For the claim and the finish, whose rows
        RealDictCursor built in Python, one column at a time (7% of a delivery's CPU for the
        claim's, 3% for the finish's)."""
        with self.raw.connection.cursor() as cur:
            execute(cur, name, params, before)
            return [column.name for column in cur.description], cur.fetchall()
