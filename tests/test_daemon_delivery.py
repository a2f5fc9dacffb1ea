"""The data path through a real `gethookd run`: ingest, deliver, retry, dead-letter, no loss."""

import signal
import time

import requests

from helpers import Api, Sink, wait_for


def _event(api, event_id):
    return api.data("GET", f"/v1/events/{event_id}")


def test_ingest_is_delivered_byte_for_byte(daemon_factory, sink):
    # The promise: at the sink within WORKER_POLL_INTERVAL + 1 s (NOTIFY usually beats it).
    daemon = daemon_factory(WORKER_POLL_INTERVAL="5s")
    api = Api(daemon.url).register()
    objs = api.pipeline(sink.url)
    body = b'{"type":"charge.succeeded","amount":1299,"note":"caf\xc3\xa9 \\u2603"}'
    resp = requests.post(
        objs["source"]["ingest_url"], data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 202, resp.text
    accepted = resp.json()["data"]
    assert accepted["status"] == "queued"
    sent = time.monotonic()
    wait_for(lambda: sink.requests, timeout=6.0, what="the webhook at the sink")
    assert time.monotonic() - sent < 6.0
    got = sink.requests[0]
    assert got["body"] == body
    assert got["headers"]["Content-Type"] == "application/json"
    assert got["headers"]["Webhook-Id"] == accepted["id"]
    assert got["headers"]["Webhook-Signature"].startswith("v1,")
    detail = wait_for(
        lambda: (d := _event(api, accepted["id"]))["event"]["status"] == "delivered" and d,
        what="the event to show as delivered",
    )
    assert detail["event"]["event_type"] == "charge.succeeded"
    [attempt] = detail["attempts"]
    assert attempt["outcome"] == "success"
    assert attempt["response_status"] == 200
    assert attempt["attempt_number"] == 1
    assert attempt["latency_ms"] >= 0
    # One log line per transition: stored and queued, then delivered.
    log = wait_for(
        lambda: f"event {accepted['id']} received from" in (x := daemon.log()) and x,
        what="the stored event's log line",
    )
    assert "queued for 1 destination(s)" in log
    assert wait_for(
        lambda: f"event {accepted['id']} delivery" in daemon.log() and "delivered" in daemon.log(),
        what="the delivery's log line",
    )


def test_failures_are_retried_then_dead_lettered(daemon_factory):
    failing = Sink(lambda n, path, body: (503, 0))
    try:
        daemon = daemon_factory()
        api = Api(daemon.url).register()
        objs = api.pipeline(failing.url, retry_policy={"max_attempts": 3, "backoff": "fixed"})
        event_id = requests.post(objs["source"]["ingest_url"], data=b"x").json()["data"]["id"]
        detail = wait_for(
            lambda: (d := _event(api, event_id))["event"]["status"] == "dead_letter" and d,
            timeout=20,
            what="dead letter",
        )
        assert len(failing.requests) == 3
        assert [a["attempt_number"] for a in detail["attempts"]] == [1, 2, 3]
        assert {a["outcome"] for a in detail["attempts"]} == {"http_5xx"}
        assert all(a["response_status"] == 503 for a in detail["attempts"])
        assert detail["attempts"][0]["response_body"] == "failing on purpose"
        assert detail["event"]["attempts_count"] == 3
        # A line per attempt: two retries, then the dead letter as a warning.
        lines = wait_for(
            lambda: (
                [x for x in daemon.log().splitlines() if f"event {event_id} delivery" in x]
                if "dead-lettered" in daemon.log()
                else None
            ),
            what="the dead letter's line",
        )
        assert [x.split(" attempt ")[1].split(" ")[0] for x in lines] == ["1/3", "2/3", "3/3"]
        assert all(" -> http_5xx (503) in " in x for x in lines)
        assert all(" INFO " in x and ": retry in " in x for x in lines[:2])
        assert " WARNING " in lines[2]
        assert lines[2].endswith(": dead-lettered (destination answered HTTP 503)")
    finally:
        failing.close()


def test_recovering_destination_gets_the_event(daemon_factory):
    flaky = Sink(lambda n, path, body: (500 if n <= 2 else 200, 0))
    try:
        daemon = daemon_factory()
        api = Api(daemon.url).register()
        objs = api.pipeline(flaky.url)
        event_id = requests.post(objs["source"]["ingest_url"], data=b"{}").json()["data"]["id"]
        detail = wait_for(
            lambda: (d := _event(api, event_id))["event"]["status"] == "delivered" and d,
            timeout=20,
            what="delivery after two failures",
        )
        assert [a["outcome"] for a in detail["attempts"]] == ["http_5xx", "http_5xx", "success"]
    finally:
        flaky.close()


def test_two_delivery_processes_deliver_each_event_exactly_once(daemon_factory, sink):
    daemon = daemon_factory(WORKER_PROCESSES="2", WORKER_MAX_CONCURRENCY="5")
    api = Api(daemon.url).register()
    objs = api.pipeline(sink.url)
    url = objs["source"]["ingest_url"]
    session = requests.Session()
    ids = [session.post(url, data=f"event {i}".encode()).json()["data"]["id"] for i in range(200)]
    wait_for(lambda: len(sink.requests) >= 200, timeout=60, what="200 deliveries")
    wait_for(
        lambda: api.data("GET", "/v1/events?status=delivered&limit=1")["total"] == 200,
        what="200 delivered events",
    )
    time.sleep(1)  # a duplicate would have to arrive now; give it the chance to
    received = sink.event_ids()
    assert sorted(received) == sorted(ids)
    assert len(set(received)) == 200
    pids = set()
    for line in daemon.log().splitlines():
        if "-> success" in line:
            pids.add(line.split("[", 1)[1].split("]", 1)[0])
    assert len(pids) == 2, "both delivery processes should have taken part"


def test_kill_9_of_a_delivery_process_loses_nothing(daemon_factory):
    first_wave: set[str] = set()

    def slow_then_fast(n, path, body):
        # The first requests hang, so the kill lands mid-delivery.
        if n <= 5:
            first_wave.add(body.decode())
            return 200, 30
        return 200, 0

    slow = Sink(slow_then_fast)
    try:
        daemon = daemon_factory(DELIVERY_TIMEOUT="3s", LEASE_GRACE="1s", WORKER_MAX_CONCURRENCY="5")
        api = Api(daemon.url).register()
        objs = api.pipeline(slow.url)
        url = objs["source"]["ingest_url"]
        ids = [requests.post(url, data=f"e{i}".encode()).json()["data"]["id"] for i in range(20)]
        wait_for(lambda: len(slow.requests) >= 5, what="deliveries in flight")
        [worker_pid] = daemon.children()["worker"]
        import os

        os.kill(worker_pid, signal.SIGKILL)
        wait_for(
            lambda: api.data("GET", "/v1/events?status=delivered&limit=1")["total"] == 20,
            timeout=40,
            what="every event delivered after the kill",
        )
        assert {r["headers"]["Webhook-Id"] for r in slow.requests} == set(ids)
        bodies = [r["body"].decode() for r in slow.requests]
        for interrupted in first_wave:  # sent again after the lease expired
            assert bodies.count(interrupted) == 2
        new_workers = daemon.children()["worker"]
        assert worker_pid not in new_workers and len(new_workers) == 1
        cancelled = [
            a for i in ids for a in _event(api, i)["attempts"] if a["outcome"] == "cancelled"
        ]
        assert len(cancelled) >= 1  # the interrupted attempts are on record, not lost
    finally:
        slow.close()


def test_an_inactive_destination_is_paused_not_skipped(daemon_factory, sink):
    daemon = daemon_factory()
    api = Api(daemon.url).register()
    objs = api.pipeline(sink.url)
    dest = objs["destination"]["id"]
    api.data("PATCH", f"/v1/destinations/{dest}", {"active": False})
    event_id = requests.post(objs["source"]["ingest_url"], data=b"held").json()["data"]["id"]
    # Held: several poll intervals pass and nothing is sent or recorded.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert not sink.requests
        time.sleep(0.1)
    assert _event(api, event_id)["attempts"] == []
    api.data("PATCH", f"/v1/destinations/{dest}", {"active": True})
    wait_for(lambda: sink.bodies() == [b"held"], what="delivery after reactivation")
    wait_for(lambda: _event(api, event_id)["event"]["status"] == "delivered", what="delivered")


def test_a_delivery_process_holds_a_paused_destination_s_waiting_deliveries(
    daemon_factory, gw, database
):
    """The PATCH only flags the destination; the delivery process's background step holds
    its waiting deliveries, woken by the pause's NOTIFY, and says so in one line."""
    account = gw.register("Acme", None, None)["account"]["id"]
    source = gw.create_source(account, "provider")
    dest = gw.create_destination(account, "later", "http://127.0.0.1:9/later")["id"]
    gw.create_route(account, dest, source["id"])
    for i in range(30):
        gw.ingest(source["path_token"], b'{"n":%d}' % i, {"Content-Type": "application/json"})
    with database.transaction() as cur:  # retries due in an hour: nothing is sent meanwhile
        cur.raw.execute("UPDATE deliveries SET next_attempt_at = now() + interval '1 hour'")
    daemon = daemon_factory(role="worker")

    def statuses() -> dict:
        with database.transaction() as cur:
            cur.raw.execute("SELECT status, count(*) AS n FROM deliveries GROUP BY 1")
            return {r["status"]: r["n"] for r in cur.raw.fetchall()}

    gw.update_destination(account, dest, {"active": False})
    wait_for(lambda: statuses() == {"held": 30}, timeout=10, what="the background hold")
    wait_for(
        lambda: f"destination {dest} is paused: 30 waiting deliveries held" in daemon.log(),
        timeout=5,
        what="the hold's log line",
    )
