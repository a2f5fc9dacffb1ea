"""Batched outcomes under real process failures: real delivery processes (the worker module
in a child Python, gevent-patched as `gethookd run` forks it), a real Sink, real signals."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from test_worker import Route, all_in, attempts_of, sql, start_worker  # noqa: F401

from gethookd.db import Database
from helpers import Sink, wait_for


def waiting_flush(database: Database) -> bool:
    """A delivery process's batch is being written, and waits for the events' locks."""
    rows = sql(
        database,
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE application_name = 'gethookd' AND wait_event_type = 'Lock'"
        " AND query LIKE %s",
        ("%FOR UPDATE%WITH input AS%",),
    )
    return rows[0]["n"] > 0


def test_kill_9_while_a_batch_is_recorded_loses_nothing(gw, database, db_url, start_worker):  # noqa: F811
    # The first answer comes early, the four others while its batch is being written.
    sink = Sink(lambda n, path, body: (200, 0.3 if n == 1 else (1.5 if n <= 5 else 0.0)))
    blocker = Database(db_url, maxconn=1)
    try:
        route = Route(gw, sink.url)
        ids = route.ingest(5)
        worker = start_worker(DELIVERY_TIMEOUT="3s", LEASE_GRACE="1s")
        wait_for(lambda: len(sink.requests) == 5, what="five deliveries on the wire")
        # Hold the events' locks: the batch that records the first answer blocks mid-
        # statement, the others queue behind it, and the process is killed right there.
        with blocker.transaction() as cur:
            cur.raw.execute("SELECT id FROM events WHERE id = ANY(%s) FOR UPDATE", (ids,))
            wait_for(lambda: waiting_flush(database), what="the batch waiting for its locks")
            os.kill(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait(5)
            cur.raw.connection.rollback()
        start_worker(DELIVERY_TIMEOUT="3s", LEASE_GRACE="1s")
        wait_for(lambda: all_in(database, ids, "delivered"), timeout=20, what="re-delivery")
    finally:
        blocker.close()
        sink.close()
    seen = Counter(sink.event_ids())
    assert set(seen) == {str(i) for i in ids}
    first = str(sink.requests[0]["headers"]["Webhook-Id"])
    # The four answers that never reached the database are delivered again, with the same
    # webhook-id; the first one's statement was already in the server, which may finish it
    # after its client died (then it was delivered once and recorded, as it should be).
    assert all(n == 2 for event_id, n in seen.items() if event_id != first)
    assert seen[first] in (1, 2)
    for event_id in ids:
        outcomes = [a["outcome"] for a in attempts_of(database, event_id)]
        expected = ["cancelled", "success"] if seen[str(event_id)] == 2 else ["success"]
        assert outcomes == expected


def test_a_process_paused_past_its_lease_cannot_overwrite_the_new_outcome(
    gw,
    database,
    start_worker,  # noqa: F811
):
    answered = threading.Event()

    def respond(n, path, body):
        if n == 1:
            return 200, 0.5  # the first process is stopped while this answer is on its way
        answered.set()
        return 404, 0.0  # the process that took over gets a different, final answer

    sink = Sink(respond)
    try:
        route = Route(gw, sink.url, max_attempts=1)
        env = {"DELIVERY_TIMEOUT": "2s", "LEASE_GRACE": "0.5s"}
        first = start_worker(**env)
        [event_id] = route.ingest(1)
        wait_for(lambda: sink.requests, what="the first delivery on the wire")
        first.proc.send_signal(signal.SIGSTOP)
        try:
            start_worker(**env)  # takes over after the 2.5 s lease
            wait_for(answered.is_set, timeout=15, what="the takeover's delivery")
            wait_for(lambda: all_in(database, [event_id], "dead_letter"), what="its outcome")
        finally:
            first.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: "lease lost to another worker" in first.log(), what="the late result")
    finally:
        sink.close()
    [row] = sql(database, "SELECT * FROM deliveries WHERE event_id = %s", (event_id,))
    assert row["status"] == "dead"
    outcomes = [(a["outcome"], a["response_status"]) for a in attempts_of(database, event_id)]
    assert outcomes == [("cancelled", None), ("http_4xx", 404)]
    assert all_in(database, [event_id], "dead_letter")


def test_eight_processes_deliver_4000_events_exactly_once(gw, database, sink, start_worker):  # noqa: F811
    route = Route(gw, sink.url)
    headers = {"Content-Type": "application/json"}
    with ThreadPoolExecutor(4) as pool:
        ids = list(
            pool.map(
                lambda i: route.gw.ingest(route.token, b'{"n":%d}' % i, headers)["id"],
                range(4000),
            )
        )
    workers = [start_worker(WORKER_MAX_CONCURRENCY="20") for _ in range(8)]
    wait_for(lambda: all_in(database, ids, "delivered"), timeout=120, what="4000 delivered")
    seen = Counter(sink.event_ids())
    assert len(seen) == 4000 and set(seen.values()) == {1}
    assert set(seen) == {str(i) for i in ids}
    [counts] = sql(
        database, "SELECT count(*) AS n, count(DISTINCT delivery_id) AS d FROM delivery_attempts"
    )
    assert counts == {"n": 4000, "d": 4000}
    assert sum(": delivered" in w.log() for w in workers) >= 2, "several should take part"
