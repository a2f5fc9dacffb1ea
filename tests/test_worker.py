"""The delivery process (worker.main) end to end: a real PostgreSQL, real sinks on
127.0.0.1, and the worker in a child Python that monkey-patches itself first, exactly
as a forked delivery process does. This pytest process is never patched."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import psycopg2
import pytest
from test_deliver import RawServer, drip, standard_webhooks_verify

from gethookd import queue
from gethookd.db import Database
from gethookd.deliver import RESPONSE_BODY_LIMIT, Outcome
from gethookd.service import Gateway
from helpers import Sink, free_port, vacuums_of_deliveries, wait_for

WORKER = r"""
from gevent import monkey

monkey.patch_all()

import os, sys
from gethookd import config, logs
from gethookd.process import worker

cfg = config.load(None, os.environ)
logs.setup(cfg.LOG_LEVEL, cfg.LOG_FORMAT)
sys.exit(worker.main(cfg, 1))
"""


# The delivery process as WORKER runs it, with a claim or finish of its own forever in
# progress (its turn taken and never given back).
TURN_HELD = WORKER.replace(
    "sys.exit(",
    """
init = worker.DeliveryWorker.__init__

def held(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self._turn.acquire()

worker.DeliveryWorker.__init__ = held
sys.exit(""",
)


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path, script: str = WORKER) -> None:
        self.log_path = log_path
        self.log_file = open(log_path, "ab")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script],
            env={**os.environ, **env},
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._ready, timeout=15, what="the delivery process to start")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the delivery process exited early:\n{self.log()}")
        return "delivery process 1 ready" in self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.log_file.close()


@pytest.fixture
def start_worker(base_env, tmp_path):
    started: list[WorkerProcess] = []

    def start(script: str = WORKER, **env: str) -> WorkerProcess:
        path = tmp_path / f"worker-{len(started)}.log"
        # These tests mostly send to one destination and count on the whole pool: the
        # per-destination cap (tests/test_fairness.py) is the pool's size unless given.
        env.setdefault("DESTINATION_MAX_IN_FLIGHT", env.get("WORKER_MAX_CONCURRENCY", "10"))
        started.append(WorkerProcess({**base_env, **env}, path, script))
        return started[-1]

    yield start
    for proc in started:
        proc.kill()


def sql(database: Database, query: str, params=None) -> list[dict]:
    with database.transaction() as cur:
        cur.raw.execute(query, params)
        return [dict(r) for r in cur.raw.fetchall()] if cur.raw.description else []


class Route:
    """An account, a source and one destination per URL given, all routed."""

    def __init__(self, gw: Gateway, *urls: str, max_attempts: int = 3, **dest) -> None:
        self.gw = gw
        self.account_id = gw.register("Acme", f"{uuid.uuid4().hex[:8]}@example.com", None)[
            "account"
        ]["id"]
        source = gw.create_source(self.account_id, "provider")
        self.token = source["path_token"]
        self.destinations = []
        for i, url in enumerate(urls):
            created = gw.create_destination(self.account_id, f"d{i}", url, **dest)
            gw.create_route(self.account_id, created["id"], source["id"], max_attempts=max_attempts)
            self.destinations.append(created)

    def ingest(self, n: int = 1, body: bytes | None = None) -> list:
        headers = {"Content-Type": "application/json"}
        return [
            self.gw.ingest(self.token, body or b'{"n":%d}' % i, headers)["id"] for i in range(n)
        ]


def statuses(database, event_ids) -> dict[str, int]:
    rows = sql(
        database,
        "SELECT gethookd_event_status(e.id, e.status) AS status, count(*) AS n FROM events e"
        " WHERE id = ANY(%s) GROUP BY 1",
        (list(event_ids),),
    )
    return {r["status"]: r["n"] for r in rows}


def all_in(database, event_ids, status: str) -> bool:
    return statuses(database, event_ids) == {status: len(event_ids)}


def attempts_of(database, event_id) -> list[dict]:
    return sql(
        database,
        "SELECT * FROM gethookd_attempts WHERE event_id = %s ORDER BY attempt_number",
        (event_id,),
    )


class Gauge:
    """A Sink responder that holds each request and counts how many are open at once."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, n: int, path: str, body: bytes) -> tuple[int, float]:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.hold)
        with self.lock:
            self.now -= 1
        return 200, 0


# -- the data path --------------------------------------------------------------------------


def test_events_arrive_signed_with_their_headers_and_auth(gw, database, sink, start_worker):
    route = Route(
        gw,
        sink.url + "/hook",
        custom_headers={"X-Tenant": "acme"},
        auth_config={"type": "bearer", "token": "s3cret-token"},
    )
    start_worker()
    ids = route.ingest(5)
    wait_for(lambda: all_in(database, ids, "delivered"), what="5 delivered events")
    assert sorted(sink.event_ids()) == sorted(str(i) for i in ids)
    secret = route.destinations[0]["signing_secret"]
    for got in sink.requests:
        h = got["headers"]
        assert got["path"] == "/hook" and got["body"].startswith(b'{"n":')
        assert h["Content-Type"] == "application/json"
        assert h["X-Tenant"] == "acme"
        assert h["Authorization"] == "Bearer s3cret-token"
        assert standard_webhooks_verify(secret, h, got["body"])
    for event_id in ids:
        [attempt] = attempts_of(database, event_id)
        assert (attempt["outcome"], attempt["response_status"]) == ("success", 200)
        assert attempt["response_body"] == "ok" and attempt["latency_ms"] >= 0


def test_with_slack_a_claim_waits_its_turn_but_never_long(gw, database, start_worker):
    """No backlog: a claim waits for the process's claim or finish in progress (they take
    turns), but at most TURN_WAIT, so a finish held up elsewhere never stops deliveries."""
    from gethookd.process.worker import TURN_WAIT

    arrived: list[float] = []
    sink = Sink(lambda n, path, body: (arrived.append(time.monotonic()), (200, 0.0))[1])
    try:
        route = Route(gw, sink.url + "/hook")
        start_worker(script=TURN_HELD)
        delays = []
        for _ in range(8):
            begun = time.monotonic()
            [event_id] = route.ingest(1)
            wait_for(lambda e=event_id: all_in(database, [e], "delivered"), what="the delivery")
            delays.append(arrived[-1] - begun)
    finally:
        sink.close()
    # A NOTIFY wakes an idle process in milliseconds, and its claim then waited; only one
    # that had started a moment before (the once-a-second look for cool-downs) waits less.
    assert sorted(delays)[len(delays) // 2] >= TURN_WAIT
    assert max(delays) < 2.0


def test_timeouts_and_network_errors_are_recorded(gw, database, start_worker):
    dripping = RawServer(drip(b"HTTP/1.1 200 OK\r\nContent-Length: 900\r\n\r\n", b"." * 900))
    refused = f"http://127.0.0.1:{free_port()}/hook"
    try:
        route = Route(gw, dripping.url, refused, max_attempts=1)
        start_worker(DELIVERY_TIMEOUT="1s")
        [event_id] = route.ingest(1)
        wait_for(lambda: all_in(database, [event_id], "dead_letter"), what="the dead letter")
    finally:
        dripping.close()
    by_dest = {a["destination_id"]: a for a in attempts_of(database, event_id)}
    slow = by_dest[route.destinations[0]["id"]]
    assert slow["outcome"] == "timeout"
    assert 950 <= slow["latency_ms"] <= 1600, "the drip-feed must not stretch the timeout"
    gone = by_dest[route.destinations[1]["id"]]
    assert gone["outcome"] == "network_error" and "ConnectionError" in gone["error_message"]


def test_a_huge_answer_with_nul_bytes_is_stored_capped(gw, database, start_worker):
    huge = (b"\x00" + b"\xff" * 3 + "ü".encode() * 60) * 1500  # ~185 KB

    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 422 Nope\r\nContent-Length: %d\r\n\r\n" % len(huge) + huge)

    server = RawServer(answer)
    try:
        route = Route(gw, server.url, max_attempts=1)
        start_worker()
        [event_id] = route.ingest(1)
        wait_for(lambda: all_in(database, [event_id], "dead_letter"), what="the dead letter")
    finally:
        server.close()
    [row] = sql(
        database,
        "SELECT outcome, response_status, octet_length(response_body) AS size,"
        " position(U&'\\FFFD' IN response_body) AS first_replacement"
        " FROM delivery_attempts WHERE event_id = %s",
        (event_id,),
    )
    assert (row["outcome"], row["response_status"]) == ("http_4xx", 422)
    assert 0.9 * RESPONSE_BODY_LIMIT <= row["size"] <= RESPONSE_BODY_LIMIT
    assert row["first_replacement"] == 1  # the NUL, kept visible as U+FFFD


def test_failures_are_retried_then_dead_lettered(gw, database, start_worker):
    failing = Sink(lambda n, path, body: (503, 0))
    try:
        route = Route(gw, failing.url, max_attempts=3)
        start_worker()
        [event_id] = route.ingest(1)
        wait_for(lambda: all_in(database, [event_id], "dead_letter"), what="the dead letter")
        assert len(failing.requests) == 3
    finally:
        failing.close()
    got = attempts_of(database, event_id)
    assert [(a["attempt_number"], a["outcome"]) for a in got] == [
        (1, "http_5xx"),
        (2, "http_5xx"),
        (3, "http_5xx"),
    ]
    # Backoff: each retry waited at least half its (capped) delay after the previous try.
    gaps = [
        (b["started_at"] - a["finished_at"]).total_seconds()
        for a, b in zip(got, got[1:], strict=False)
    ]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2, gaps


# -- concurrency, waking, draining ----------------------------------------------------------


def test_concurrency_never_exceeds_worker_max_concurrency(gw, database, start_worker):
    gauge = Gauge(hold=0.15)
    busy = Sink(gauge)
    try:
        route = Route(gw, busy.url)
        ids = route.ingest(40)
        start_worker(WORKER_MAX_CONCURRENCY="4")
        wait_for(lambda: all_in(database, ids, "delivered"), what="40 delivered events")
        assert len(busy.requests) == 40
    finally:
        busy.close()
    assert gauge.peak == 4


def test_a_notification_wakes_the_worker_and_survives_a_lost_connection(
    gw, database, sink, start_worker
):
    route = Route(gw, sink.url)
    start_worker(WORKER_POLL_INTERVAL="30s")  # only a NOTIFY can make it this fast
    [first] = route.ingest(1)
    wait_for(lambda: all_in(database, [first], "delivered"), timeout=3, what="a woken worker")

    def listeners() -> list[int]:
        rows = sql(
            database,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'LISTEN gethookd_deliveries;%' AND pid <> pg_backend_pid()",
        )
        return [r["pid"] for r in rows]

    [old] = wait_for(listeners, what="the LISTEN connection")
    sql(database, "SELECT pg_terminate_backend(%s)", (old,))
    wait_for(lambda: listeners() and listeners() != [old], what="a new LISTEN connection")
    [second] = route.ingest(1)
    wait_for(lambda: all_in(database, [second], "delivered"), timeout=3, what="a woken worker")


def test_the_worker_recovers_at_once_when_its_connections_are_cut(
    gw, config, db_url, sink, start_worker
):
    route = Route(gw, sink.url)
    start_worker(WORKER_MAX_CONCURRENCY="8", WORKER_POLL_INTERVAL="0.2s")
    ids = route.ingest(30)
    wait_for(lambda: all_in(gw.db, ids, "delivered"), what="a first wave")
    # As after a database restart: every connection is cut (this test's own too).
    admin = Database(db_url, maxconn=1)
    cut = sql(
        admin,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert len(cut) >= 1  # the LISTEN connection, and any pooled one
    route.gw = Gateway(config, admin)
    more = route.ingest(10)
    # Dead pooled connections are discarded at once, not one per growing backoff.
    wait_for(lambda: all_in(admin, more, "delivered"), timeout=4, what="the second wave")
    admin.close()


def test_a_retry_falls_due_without_waiting_for_the_poll_interval(gw, database, start_worker):
    flaky = Sink(lambda n, path, body: (500 if n == 1 else 200, 0))
    try:
        route = Route(gw, flaky.url)
        start_worker(WORKER_POLL_INTERVAL="30s", RETRY_BASE_DELAY="0.3s", RETRY_MAX_DELAY="0.3s")
        [event_id] = route.ingest(1)
        wait_for(lambda: all_in(database, [event_id], "delivered"), timeout=4, what="the retry")
    finally:
        flaky.close()
    assert [a["outcome"] for a in attempts_of(database, event_id)] == ["http_5xx", "success"]


def test_a_delivery_whose_event_was_locked_goes_out_once_the_lock_is_gone(
    gw, database, sink, db_url, start_worker
):
    # The claim skips a delivery whose event someone holds (a replay, a flusher): nothing
    # is sent meanwhile, and it goes out once the lock is gone, long before the poll
    # interval (tests/test_queue.py checks the claim's `lost` that makes the worker retry).
    route = Route(gw, sink.url)
    [event_id] = route.ingest(1)
    other = psycopg2.connect(db_url)
    try:
        with other.cursor() as cur:
            cur.execute("SELECT 1 FROM events WHERE id = %s FOR UPDATE", (event_id,))
        start_worker(WORKER_POLL_INTERVAL="30s")
        time.sleep(1.5)
        assert sink.requests == [], "sent while its event was locked"
    finally:
        other.rollback()
        other.close()
    wait_for(lambda: all_in(database, [event_id], "delivered"), timeout=4, what="the delivery")
    assert len(sink.requests) == 1


def test_stop_drains_in_flight_deliveries_and_claims_no_more(gw, database, start_worker):
    slow = Sink(lambda n, path, body: (200, 1.5))
    try:
        route = Route(gw, slow.url)
        ids = route.ingest(8)
        worker = start_worker(WORKER_MAX_CONCURRENCY="3")
        wait_for(lambda: len(slow.requests) == 3, what="three deliveries in flight")
        asked = time.monotonic()
        assert worker.stop() == 0
        took = time.monotonic() - asked
        assert len(slow.requests) == 3
    finally:
        slow.close()
    assert 0.5 <= took < 8, "stop should wait for the in-flight sends, and only for them"
    assert statuses(database, ids) == {"delivered": 3, "queued": 5}
    [counts] = sql(
        database,
        "SELECT count(*) FILTER (WHERE outcome = 'success') AS success,"
        " count(*) FILTER (WHERE outcome <> 'success') AS other FROM delivery_attempts",
    )
    assert counts == {"success": 3, "other": 0}
    assert "draining 3 in-flight deliveries" in worker.log()


def test_sends_still_running_at_drain_timeout_give_their_lease_back(gw, database, start_worker):
    stuck = Sink(lambda n, path, body: (200, 10))
    try:
        route = Route(gw, stuck.url)
        ids = route.ingest(2)
        worker = start_worker(DRAIN_TIMEOUT="0.5s", DELIVERY_TIMEOUT="20s", LEASE_GRACE="60s")
        wait_for(lambda: len(stuck.requests) == 2, what="two deliveries in flight")
        asked = time.monotonic()
        assert worker.stop() == 0
        assert time.monotonic() - asked < 5
    finally:
        stuck.close()
    assert statuses(database, ids) == {"retry_scheduled": 2}
    for event_id in ids:
        [attempt] = attempts_of(database, event_id)
        assert attempt["outcome"] == "cancelled" and "DRAIN_TIMEOUT" in attempt["error_message"]
    # Due again now, not after the 80 s lease: the next process picks them up at once.
    assert {j.event_id for j in queue.claim(database, 10, 60)} == {str(i) for i in ids}


# -- fencing and exactly-once between workers -----------------------------------------------


def test_a_worker_whose_lease_was_taken_over_changes_nothing(gw, database, start_worker):
    slow = Sink(lambda n, path, body: (200, 1.5))
    try:
        route = Route(gw, slow.url)
        worker = start_worker()
        [event_id] = route.ingest(1)
        wait_for(lambda: slow.requests, what="the delivery in flight")
        # Another worker decides this one is dead: the lease runs out and it claims.
        sql(database, "UPDATE deliveries SET lease_expires_at = now() WHERE status = 'in_flight'")
        [takeover] = queue.claim(database, 10, 60)
        wait_for(lambda: "lease lost to another worker" in worker.log(), what="the late report")
    finally:
        slow.close()
    [row] = sql(database, "SELECT * FROM deliveries WHERE event_id = %s", (event_id,))
    assert row["status"] == "in_flight" and str(row["lease_token"]) == takeover.lease_token
    first, second = attempts_of(database, event_id)
    assert first["outcome"] == "cancelled" and first["response_status"] is None
    assert second["outcome"] == "pending"
    assert sql(
        database,
        "SELECT gethookd_event_status(e.id, e.status) AS status FROM events e WHERE id = %s",
        (event_id,),
    ) == [{"status": "delivering"}]
    ok = Outcome("success", 200, "ok", None, 1)
    assert queue.finish(database, takeover, ok, None) == "succeeded"


def test_two_workers_deliver_each_event_exactly_once(gw, database, sink, start_worker):
    route = Route(gw, sink.url)
    workers = [start_worker(WORKER_MAX_CONCURRENCY="5") for _ in range(2)]
    ids = route.ingest(150)
    wait_for(lambda: all_in(database, ids, "delivered"), timeout=25, what="150 delivered")
    assert all(": delivered" in w.log() for w in workers), "both should have taken part"
    received = sink.event_ids()
    assert len(received) == 150 and set(received) == {str(i) for i in ids}
    [counts] = sql(
        database, "SELECT count(*) AS n, count(DISTINCT delivery_id) AS d FROM delivery_attempts"
    )
    assert counts == {"n": 150, "d": 150}


def test_through_a_backlog_results_are_recorded_in_fewer_larger_batches(
    gw, database, sink, start_worker
):
    """Once a batch of results held FLUSH_GATHER_FROM or more, the next is written no
    sooner than FLUSH_GATHER after it: each finish costs a fixed share, so under load the
    finishes are fewer and larger. The attempts of one batch share its transaction's time
    (finished_at), so the batches show in the rows; and each event is delivered once.
    FLUSH_GATHER_FROM is 8 here, so that a slow machine still makes such batches."""
    from gethookd.process.worker import FLUSH_GATHER

    gather_from = 8
    script = WORKER.replace("sys.exit(", f"worker.FLUSH_GATHER_FROM = {gather_from}\nsys.exit(")
    route = Route(gw, sink.url)
    ids = route.ingest(1000)
    start_worker(script=script, WORKER_MAX_CONCURRENCY="50")
    wait_for(lambda: all_in(database, ids, "delivered"), timeout=60, what="1,000 delivered")
    batches = sql(
        database,
        "SELECT finished_at, count(*) AS n FROM delivery_attempts"
        " GROUP BY finished_at ORDER BY finished_at",
    )
    assert sum(b["n"] for b in batches) == 1000
    assert sorted(sink.event_ids()) == sorted(str(i) for i in ids)  # each sent once
    gaps = [
        (later["finished_at"] - earlier["finished_at"]).total_seconds()
        for earlier, later in zip(batches, batches[1:], strict=False)
        if earlier["n"] >= gather_from
    ]
    sizes = [b["n"] for b in batches]
    assert len(gaps) >= 3, f"a backlog of 1,000 should make large batches: {sizes}"
    # The next batch's transaction starts FLUSH_GATHER after the last one's flush began,
    # whose transaction started a moment later: allow that moment.
    assert sorted(gaps)[len(gaps) // 2] >= FLUSH_GATHER * 0.9, (gaps, sizes)


def test_a_pause_that_holds_many_deliveries_vacuums_them_out_of_the_claims_path(
    gw, database, start_worker
):
    """A delivery process that has held HOLD_VACUUM_AFTER (100 here) vacuums the queue when
    its pass ends, once, and says so (tests/test_batching.py shows what that spares a claim)."""
    route = Route(gw, "http://127.0.0.1:9/never")
    ids = route.ingest(150)
    # Not due for an hour: no claim meets them, so the hold alone takes them out.
    sql(database, "UPDATE deliveries SET next_attempt_at = now() + interval '1 hour'")
    sql(database, "ALTER TABLE deliveries SET (autovacuum_enabled = false)")
    count = vacuums_of_deliveries(database.dsn)
    script = WORKER.replace("sys.exit(", "worker.queue.HOLD_VACUUM_AFTER = 100\nsys.exit(")
    proc = start_worker(script=script)
    gw.update_destination(route.account_id, route.destinations[0]["id"], {"active": False})

    # The line is written once the vacuum has returned: by then its count is in the stats.
    wait_for(
        lambda: "vacuumed deliveries after 150 were held" in proc.log(),
        timeout=15,
        what="a vacuum of deliveries after the hold",
    )
    assert vacuums_of_deliveries(database.dsn) == count + 1
    held = sql(database, "SELECT status, count(*) AS n FROM deliveries GROUP BY 1")
    assert held == [{"status": "held", "n": len(ids)}]
    assert proc.log().count("vacuumed deliveries") == 1
