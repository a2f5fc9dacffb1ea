"""Group commit and the cached catalog keep every guarantee of a lone ingest."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor

import psutil
import psycopg2
import pytest
import requests
from prometheus_client import REGISTRY

from gethookd import logs
from gethookd.errors import NotFound
from gethookd.services.committer import Committer, Pending
from helpers import Api, CountingStream, wait_for

HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def batching(gw):
    gw.start_batching()
    gw.catalog_cache._start()  # as the first ingest would; cached only once listening
    wait_for(lambda: gw.catalog_cache._listening, 10, "the catalog LISTEN connection")
    yield gw
    gw.stop_batching()


def _pipeline(gw, sink_url: str = "http://127.0.0.1:9/hook"):
    account = gw.register("acme", None, None)["account"]["id"]
    source = gw.create_source(account, "provider")
    dest = gw.create_destination(account, "sink", sink_url)
    route = gw.create_route(account, dest["id"], source["id"])
    return account, source, dest, route


def _scalar(database, sql: str, *params):
    with database.transaction() as cur:
        cur.raw.execute(sql, params)
        return list(cur.raw.fetchone().values())[0]


def _invalidated(gw, before: int) -> bool:
    return gw.catalog_cache.invalidations > before


def test_concurrent_ingests_are_each_stored_once_with_their_delivery(batching, database):
    gw = batching
    _, source, _, _ = _pipeline(gw)
    n = 400

    def one(i: int) -> uuid.UUID:
        return gw.ingest(source["path_token"], f'{{"n": {i}}}'.encode(), HEADERS)["id"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(one, range(n)))
    assert len(set(ids)) == n
    assert _scalar(database, "SELECT count(*) FROM events") == n
    assert _scalar(database, "SELECT count(DISTINCT event_id) FROM deliveries") == n
    assert _scalar(database, "SELECT count(*) FROM deliveries WHERE status = 'pending'") == n
    bodies = _scalar(database, "SELECT count(DISTINCT body) FROM events")
    assert bodies == n
    # Grouped: fewer transactions (one now() each) than events.
    assert _scalar(database, "SELECT count(DISTINCT created_at) FROM events") < n


def test_a_batch_logs_a_line_per_event_and_counts_each_in_few_writes(batching, database):
    gw = batching
    account, _, dest, _ = _pipeline(gw)
    keyed = gw.create_source(account, "keyed", verification_config={"dedup_header": "X-Id"})
    gw.create_route(account, dest["id"], keyed["id"])
    source_id = str(keyed["id"])
    n, ids = 300, 200  # 300 webhooks carrying 200 provider ids: 100 are retries

    def count(outcome: str) -> float:
        labels = {"source": source_id, "outcome": outcome}
        return REGISTRY.get_sample_value("gethookd_events_received_total", labels) or 0.0

    def one(i: int) -> dict:
        headers = {**HEADERS, "X-Id": f"d-{i % ids}"}
        return gw.ingest(keyed["path_token"], f'{{"n": {i % ids}}}'.encode(), headers)

    logger = logging.getLogger("gethookd.events")
    stream = CountingStream()
    handler = logs.LineHandler(stream)
    handler.setFormatter(logs.formatter("text"))
    level, seconds_before = logger.level, REGISTRY.get_sample_value("gethookd_ingest_seconds_count")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(n)))
        # Written by the committer's bookkeeping thread, moments after the answers.
        wait_for(lambda: stream.getvalue().count("\n") >= n, 10, "a line per webhook")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    stored = {str(a["id"]) for a in answers if not a.get("duplicate")}
    assert len(stored) == ids
    lines = stream.getvalue().splitlines()
    queued = [line for line in lines if "queued for 1 destination(s)" in line]
    assert sorted(line.split("event ", 1)[1].split(" ", 1)[0] for line in queued) == sorted(stored)
    assert all(f"received from source {source_id} (" in line for line in queued)
    retries = [line for line in lines if "; not stored" in line]
    assert len(retries) == n - ids and len(lines) == n
    assert all(line.split("duplicate of event ")[1].split(";")[0] in stored for line in retries)
    assert stream.writes < n  # a batch's lines in one write
    assert count("accepted") == ids and count("duplicate") == n - ids
    seconds = REGISTRY.get_sample_value("gethookd_ingest_seconds_count") - (seconds_before or 0)
    assert seconds == n


def test_a_lost_database_answers_every_request_of_the_batch_and_stores_nothing(
    batching, database, db_url
):
    gw = batching
    _, source, _, _ = _pipeline(gw)
    gw.ingest(source["path_token"], b"{}", HEADERS)  # the committer is connected
    admin = psycopg2.connect(db_url)
    admin.autocommit = True
    with admin.cursor() as cur:  # the committer's connection dies under it
        # Only the committer's (its last statement, the group commit's): were the catalog's
        # connections killed too, the 8 requests below could all fail at their source's
        # lookup, none reach the committer, and the last ingest meet its dead connection.
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND query LIKE %s",
            ("%gethookd_store_events%",),
        )
        assert [row[0] for row in cur.fetchall()] == [True]
    admin.close()
    errors = []

    def one(_):
        try:
            gw.ingest(source["path_token"], b"{}", HEADERS)
        except psycopg2.OperationalError as exc:  # the API answers 503 to it
            errors.append(exc)

    # The first batch after the loss fails as a whole; later ones reconnect.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(8)))
    stored = _scalar(database, "SELECT count(*) FROM events")
    assert len(errors) >= 1
    assert stored == 1 + 8 - len(errors)
    assert _scalar(database, "SELECT count(*) FROM deliveries") == stored
    gw.ingest(source["path_token"], b"{}", HEADERS)
    assert _scalar(database, "SELECT count(*) FROM events") == stored + 1


def _pending(account_id, source: dict, dest: dict) -> Pending:
    return Pending(
        account_id=account_id,
        direction="inbound",
        source_id=source["id"],
        event_type=None,
        headers={},
        body=b"{}",
        content_type=None,
        created_by="test",
        targets=[(dest["id"], 3, "exponential")],
    )


def test_bookkeeping_after_commit_neither_holds_back_nor_stops_commits(gw, db_url, database):
    _, source, dest, _ = _pipeline(gw)
    account = _scalar(database, "SELECT account_id FROM sources")
    calls: list[list[Pending]] = []
    release = threading.Event()

    def after_commit(items: list[Pending]) -> None:
        calls.append(items)
        if len(calls) == 1:  # slow, then failing: the commits go on meanwhile
            release.wait(10)
            raise RuntimeError("bookkeeping failed")

    committer = Committer(db_url, after_commit=after_commit)
    try:
        first = committer.submit(_pending(account, source, dest))
        wait_for(lambda: calls, 10, "the first bookkeeping call")
        later = [committer.submit(_pending(account, source, dest)) for _ in range(3)]
        assert [r["deliveries"] for r in later] == [1, 1, 1]  # committed while it was stuck
        assert len(calls) == 1
        release.set()
    finally:
        committer.close()  # hands over what is left before it returns
    assert [item.result for item in calls[0]] == [first]
    assert [item.result for call in calls[1:] for item in call] == later
    assert _scalar(database, "SELECT count(*) FROM events") == 4


def test_under_load_a_short_batch_waits_briefly_for_more(gw, db_url, database):
    """At a light load an event is written at once. After a batch of 8 (load), a smaller
    batch waits up to gather_wait for more: an event that comes meanwhile is written in the
    same statement (one transaction: one created_at), and none waits longer than that."""
    _, source, dest, _ = _pipeline(gw)
    account = _scalar(database, "SELECT account_id FROM sources")
    committer = Committer(db_url, gather_wait=2.0)
    try:
        started = time.monotonic()
        committer.submit(_pending(account, source, dest))  # idle, the last batch 0
        committer.submit(_pending(account, source, dest))  # the last batch 1: no load
        assert time.monotonic() - started < 1.5

        committer._last = 8  # as after a batch of 8 under load
        with ThreadPoolExecutor(2) as pool:
            started = time.monotonic()
            first = pool.submit(committer.submit, _pending(account, source, dest))
            time.sleep(0.2)
            second = pool.submit(committer.submit, _pending(account, source, dest))
            ids = [first.result(10)["id"], second.result(10)["id"]]
        waited = time.monotonic() - started
        assert 2.0 <= waited < 8
    finally:
        committer.close()
    with database.transaction() as cur:
        cur.raw.execute("SELECT DISTINCT created_at FROM events WHERE id = ANY(%s)", (ids,))
        assert len(cur.raw.fetchall()) == 1  # one statement
    assert _scalar(database, "SELECT count(*) FROM events") == 4


def test_a_bad_event_in_a_batch_fails_alone(gw, db_url, database):
    _, source, dest, _ = _pipeline(gw)
    account = _scalar(database, "SELECT account_id FROM sources")

    def item(account_id) -> Pending:
        return _pending(account_id, source, dest)

    committer = Committer(db_url)
    good, bad, other = item(account), item(uuid.uuid4()), item(account)  # no such account
    try:
        committer._commit([good, bad, other])
    finally:
        committer._drop_connection()
    assert good.result["deliveries"] == 1 and other.result["deliveries"] == 1
    assert isinstance(bad.error, psycopg2.IntegrityError) and bad.result is None
    assert _scalar(database, "SELECT count(*) FROM events") == 2
    assert _scalar(database, "SELECT count(*) FROM deliveries") == 2


def test_catalog_changes_are_seen_by_the_next_ingest(batching, database):
    gw = batching
    account, source, dest, route = _pipeline(gw)
    token = source["path_token"]
    assert gw.ingest(token, b"{}", HEADERS)["deliveries"] == 1  # cached now

    # a second route to a new destination
    seen = gw.catalog_cache.invalidations
    other = gw.create_destination(account, "other", "http://127.0.0.1:9/other")
    gw.create_route(account, other["id"], source["id"])
    wait_for(lambda: _invalidated(gw, seen), 5, "the route's notification")
    assert gw.ingest(token, b"{}", HEADERS)["deliveries"] == 2

    # a route removed
    seen = gw.catalog_cache.invalidations
    gw.delete_route(account, route["id"])
    wait_for(lambda: _invalidated(gw, seen), 5, "the deletion's notification")
    event = gw.ingest(token, b"{}", HEADERS)
    assert event["deliveries"] == 1

    # a destination paused: its deliveries are held, read from its row (no cache involved)
    gw.update_destination(account, other["id"], {"active": False})
    event = gw.ingest(token, b"{}", HEADERS)
    status = _scalar(database, "SELECT status FROM deliveries WHERE event_id = %s", event["id"])
    assert status == "held"

    # a source deleted: refused by the very next ingest, even before the notification
    gw.delete_source(account, source["id"])
    with pytest.raises(NotFound):
        gw.ingest(token, b"{}", HEADERS)
    assert _scalar(database, "SELECT count(*) FROM events WHERE source_id IS NOT NULL") == 0


def test_a_lost_listen_connection_clears_the_cache(batching, db_url):
    gw = batching
    account, source, _, _ = _pipeline(gw)
    cache = gw.catalog_cache
    # (the pipeline's own notifications may still clear the first entry)
    wait_for(lambda: gw.ingest(source["path_token"], b"{}", HEADERS) and cache._entries, 5)
    admin = psycopg2.connect(db_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN gethookd_catalog%'"
        )
    admin.close()
    wait_for(lambda: not cache._entries, 5, "the cache to be cleared")
    wait_for(lambda: cache._listening, 10, "the listener to reconnect")
    assert gw.ingest(source["path_token"], b"{}", HEADERS)["deliveries"] == 1


def test_a_deleted_source_stops_ingest_over_http(api_daemon):
    api = Api(api_daemon.url).register(f"user-{uuid.uuid4().hex[:10]}@example.com")
    pipe = api.pipeline("http://127.0.0.1:9")
    url = f"{api_daemon.url}/ingest/{pipe['source']['path_token']}"
    for _ in range(5):  # both processes' caches hold it
        assert requests.post(url, data=b"{}", headers=HEADERS, timeout=5).status_code == 202
    api.call("DELETE", f"/v1/sources/{pipe['source']['id']}")
    started = time.monotonic()
    assert requests.post(url, data=b"{}", headers=HEADERS, timeout=5).status_code == 404
    assert time.monotonic() - started < 2


def test_kill_9_of_an_api_worker_loses_no_accepted_event(daemon_factory, sink):
    daemon = daemon_factory(API_WORKERS="2", API_THREADS="8")
    api = Api(daemon.url).register("killer@example.com")
    pipe = api.pipeline(sink.url)
    url = f"{daemon.url}/ingest/{pipe['source']['path_token']}"
    accepted: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                resp = session.post(url, data=b'{"type": "t"}', headers=HEADERS, timeout=5)
            except requests.RequestException:
                session = requests.Session()
                continue
            if resp.status_code == 202:
                with lock:
                    accepted.append(resp.json()["data"]["id"])

    threads = [threading.Thread(target=load, daemon=True) for _ in range(16)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(accepted) > 200, 30, "ingest under load")
        [arbiter] = daemon.children()["api"]
        workers = psutil.Process(arbiter).children()
        assert workers
        os.kill(workers[0].pid, signal.SIGKILL)
        count = len(accepted)
        wait_for(lambda: len(accepted) > count + 200, 30, "ingest to go on after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    expected = set(accepted)
    wait_for(lambda: expected <= set(sink.event_ids()), 60, "every accepted event delivered")


def test_nul_in_a_webhooks_text_is_dropped_not_a_failed_batch(batching, database):
    """JSON bodies may carry \\u0000 where PostgreSQL text cannot: the event is stored (its
    body byte for byte, the NUL dropped from the event type); a header holding the six
    characters `\\u0000` is kept as sent."""
    gw = batching
    _, source, _, _ = _pipeline(gw)
    body = b'{"type": "order.\\u0000paid", "x": 1}'
    event = gw.ingest(source["path_token"], body, {**HEADERS, "X-Note": "a\\u0000b"})
    assert event["status"] == "queued"
    with database.transaction() as cur:
        cur.raw.execute(
            "SELECT event_type, body, headers->>'x-note' AS note FROM events WHERE id = %s",
            (event["id"],),
        )
        row = cur.raw.fetchone()
    assert row["event_type"] == "order.paid"
    assert bytes(row["body"]) == body
    assert row["note"] == "a\\u0000b"


def test_an_expired_entry_is_loaded_once_for_requests_that_miss_together(batching, database):
    """When a source's entry expires under load, the requests that miss at once wait for
    one load (one transaction), not one each; all of them are stored."""
    gw = batching
    _, source, _, _ = _pipeline(gw)
    token = source["path_token"]
    cache = gw.catalog_cache
    loads = []
    real_load = gw._ingest_source  # the real read, counted

    def counted(tok):
        loads.append(tok)
        time.sleep(0.2)  # a slow read: every request below arrives while it runs
        return real_load(tok)

    gw._ingest_source = counted
    wait_for(lambda: gw.ingest(token, b"{}", HEADERS) and token in cache._entries, 5)
    loads.clear()
    cache.clear()  # as an expiry or an invalidation leaves it
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: gw.ingest(token, b"{}", HEADERS), range(16)))
    assert all(a["deliveries"] == 1 for a in answers)
    assert len(loads) == 1, f"{len(loads)} loads for one expired entry"
    assert len({a["id"] for a in answers}) == 16


def test_requests_waiting_on_a_failed_load_fail_with_it_at_once(batching):
    """The database goes away while an expired entry is loaded: the requests waiting for
    that load get its error at once (a 503 each), not a load of their own in turn."""
    gw = batching
    _, source, _, _ = _pipeline(gw)
    token = source["path_token"]
    loads = []

    def failing(tok):
        loads.append(tok)
        time.sleep(0.3)  # a slow read: every request below arrives while it runs
        # A real failure of the driver: nothing listens on port 1.
        psycopg2.connect("postgresql://gethookd@127.0.0.1:1/gethookd", connect_timeout=2)

    gw._ingest_source = failing
    gw.catalog_cache.clear()
    started = time.monotonic()

    depths = []

    def one(_i):
        try:
            gw.ingest(token, b"{}", HEADERS)
        except psycopg2.OperationalError as exc:
            depths.append(len(traceback.extract_tb(exc.__traceback__)))
            return str(exc)
        return "stored"

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert "127.0.0.1" in answers[0] and answers == [answers[0]] * 8, answers
    assert len(loads) == 1
    # Each waiter's error carries its own frames, not every earlier waiter's as well.
    assert max(depths) <= 2 * min(depths), depths
    assert time.monotonic() - started < 2
