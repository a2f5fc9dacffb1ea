"""Destinations that fail, ask for time, go away or rotate their secret, through a real
`gethookd run` and real receivers on 127.0.0.1: the circuit breaker (opens, holds without
burning attempts, probes, closes), auto-disable after a failing period, Retry-After in both
forms, 410 Gone, and the two signatures of a secret rotation verified with standardwebhooks."""

from __future__ import annotations

import datetime
import email.utils
import threading
import time

import psycopg2
import requests
from receiver import Receiver
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from helpers import Api, wait_for


def setup(api: Api, url: str, max_attempts: int = 10, **dest) -> dict:
    source = api.data("POST", "/v1/sources", {"name": "provider"}, status=201)
    dest = api.data("POST", "/v1/destinations", {"name": "d", "url": url, **dest}, status=201)
    body = {
        "source_id": source["id"],
        "destination_id": dest["id"],
        "retry_policy": {"max_attempts": max_attempts, "backoff": "fixed"},
    }
    api.data("POST", "/v1/routes", body, status=201)
    return {"ingest": source["ingest_url"], "dest": dest, "path": f"/v1/destinations/{dest['id']}"}


def ingest(url: str, n: int = 1) -> list[str]:
    ids = []
    for i in range(n):
        resp = requests.post(url, json={"n": i}, timeout=10)
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["data"]["id"])
    return ids


def rows(db_url: str, query: str, params=()) -> list[tuple]:
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()
    finally:
        conn.close()


def statuses(db_url: str, event_ids: list[str]) -> list[str]:
    found = rows(
        db_url, "SELECT status FROM deliveries WHERE event_id = ANY(%s::uuid[])", (event_ids,)
    )
    return sorted(r[0] for r in found)


def attempts(db_url: str) -> int:
    return rows(db_url, "SELECT count(*) FROM delivery_attempts WHERE outcome <> 'pending'")[0][0]


def test_a_circuit_opens_holds_without_attempts_probes_and_closes(daemon_factory, db_url):
    healthy = threading.Event()
    receiver = Receiver(lambda n, p, h, b: (200 if healthy.is_set() else 503, 0.0, {}))
    try:
        daemon = daemon_factory(
            CIRCUIT_FAILURE_THRESHOLD="3",
            CIRCUIT_COOLDOWN="1s",
            CIRCUIT_COOLDOWN_MAX="5s",
            RETRY_BASE_DELAY="0.1s",
            RETRY_MAX_DELAY="0.2s",
        )
        api = Api(daemon.url).register()
        pipe = setup(api, receiver.url + "/hook")
        ids = ingest(pipe["ingest"], 4)

        def opened():
            dest = api.data("GET", pipe["path"])
            return dest if dest["circuit_state"] == "open" else None

        dest = wait_for(opened, timeout=10, what="the circuit to open")
        assert dest["consecutive_failures"] >= 3 and dest["failing_since"] is not None
        assert dest["last_success_at"] is None
        until = datetime.datetime.fromisoformat(dest["circuit_open_until"]).timestamp()
        # While open: held, not attempted (stragglers already on the wire may finish).
        wait_for(lambda: set(statuses(db_url, ids)) == {"held"}, timeout=5, what="held")
        sent_while_open = [r for r in receiver.seen() if until - 0.7 < r["at"] < until - 0.05]
        assert sent_while_open == []
        # The probe: one delivery after the cool-down; it fails, the circuit re-opens with a
        # longer cool-down (2 s), and still nothing else is sent.
        before = receiver.count()
        wait_for(lambda: receiver.count() > before, timeout=5, what="the first probe")
        first_probe = receiver.seen()[before]["at"]
        assert first_probe >= until - 0.05

        def reopened():
            dest = api.data("GET", pipe["path"])
            again = datetime.datetime.fromisoformat(
                dest["circuit_open_until"] or "1970-01-01T00:00:00+00:00"
            )
            return dest if dest["circuit_state"] == "open" and again.timestamp() > until else None

        dest = wait_for(reopened, timeout=5, what="the circuit to re-open")
        until2 = datetime.datetime.fromisoformat(dest["circuit_open_until"]).timestamp()
        assert until2 - first_probe >= 1.5  # the cool-down doubled
        count_reopened = receiver.count()
        assert count_reopened == before + 1  # one probe, no more
        recorded = attempts(db_url)
        assert recorded == count_reopened  # every attempt counted was a request sent

        healthy.set()
        wait_for(lambda: set(statuses(db_url, ids)) == {"succeeded"}, timeout=10, what="delivered")
        arrivals = [r["at"] for r in receiver.seen()[count_reopened:]]
        assert min(arrivals) >= until2 - 0.05  # nothing before the second probe
        dest = api.data("GET", pipe["path"])
        assert dest["circuit_state"] == "closed" and dest["consecutive_failures"] == 0
        assert dest["last_success_at"] is not None and dest["failing_since"] is None
        # No attempt was burned while open: each delivery has the attempts it was sent.
        assert attempts(db_url) == receiver.count()
        assert receiver.count() <= 3 + 4 + 2 + 3  # opening run, stragglers, 2 probes, the rest
        log = daemon.log()
        assert "circuit open after" in log and "circuit closed" in log
    finally:
        receiver.close()


def test_a_destination_failing_for_the_period_is_disabled_and_re_enabled(
    daemon_factory, db_url, gw
):
    healthy = threading.Event()
    receiver = Receiver(lambda n, p, h, b: (200 if healthy.is_set() else 500, 0.0, {}))
    try:
        daemon = daemon_factory(
            DESTINATION_DISABLE_AFTER="1.5s",
            CIRCUIT_FAILURE_THRESHOLD="1000",
            RETRY_BASE_DELAY="0.2s",
            RETRY_MAX_DELAY="0.2s",
        )
        api = Api(daemon.url).register()
        pipe = setup(api, receiver.url + "/hook", max_attempts=100)
        [first] = ingest(pipe["ingest"])

        def disabled():
            dest = api.data("GET", pipe["path"])
            return dest if dest["disabled_at"] else None

        dest = wait_for(disabled, timeout=10, what="the destination to be disabled")
        assert "failing continuously since" in dest["disabled_reason"]
        assert dest["active"] is True and dest["consecutive_failures"] >= 3
        wait_for(lambda: statuses(db_url, [first]) == ["held"], timeout=5, what="held")
        # A new event waits held, unattempted.
        [second] = ingest(pipe["ingest"])
        wait_for(lambda: statuses(db_url, [second]) == ["held"], timeout=5, what="parked")
        assert rows(
            db_url, "SELECT attempt_count FROM deliveries WHERE event_id = %s", (second,)
        ) == [(0,)]
        from gethookd.db import Database
        from gethookd.status import queue_state

        database = Database(db_url, maxconn=1)
        try:
            [shown] = queue_state(database)["unhealthy_destinations"]
        finally:
            database.close()
        assert shown["state"] == "disabled" and shown["waiting"] == 2
        assert "failing continuously since" in shown["disabled_reason"]
        assert gw.metrics_snapshot()["destinations"]["disabled"] == 1  # /metrics' gauge
        assert "disabled: failing continuously" in daemon.log()

        healthy.set()
        dest = api.data("PATCH", pipe["path"], {"active": True})
        assert dest["disabled_at"] is None and dest["disabled_reason"] is None
        wait_for(
            lambda: statuses(db_url, [first, second]) == ["succeeded"] * 2,
            timeout=10,
            what="delivered",
        )
        assert attempts(db_url) == receiver.count()
    finally:
        receiver.close()


def test_retry_after_in_seconds_and_as_a_date_sets_the_next_attempt(daemon_factory, db_url):
    def respond(n, path, headers, body):
        if n == 1:
            return 503, 0.0, {"Retry-After": "1"}
        if n == 2:
            return 429, 0.0, {"Retry-After": email.utils.formatdate(time.time() + 2, usegmt=True)}
        if n == 3:
            return 503, 0.0, {"Retry-After": "3600"}  # bounded by RETRY_MAX_DELAY
        return 200, 0.0, {}

    receiver = Receiver(respond)
    try:
        daemon = daemon_factory(RETRY_BASE_DELAY="0.1s", RETRY_MAX_DELAY="1.5s")
        api = Api(daemon.url).register()
        pipe = setup(api, receiver.url + "/hook")
        [event_id] = ingest(pipe["ingest"])
        wait_for(
            lambda: statuses(db_url, [event_id]) == ["succeeded"], timeout=15, what="delivered"
        )
        at = [r["at"] for r in receiver.seen()]
    finally:
        receiver.close()
    assert len(at) == 4
    gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
    # Without Retry-After each retry would come within 0.1 s (fixed backoff, jittered).
    assert 0.95 <= gaps[0] < 1.6, gaps
    assert 0.95 <= gaps[1] < 2.6, gaps  # the date has whole seconds: 1 to 2 s from now
    assert 1.4 <= gaps[2] < 2.2, gaps  # asked for an hour, bounded by RETRY_MAX_DELAY


def test_410_disables_the_destination_and_holds_its_deliveries(daemon_factory, db_url):
    gone = threading.Event()
    gone.set()
    receiver = Receiver(lambda n, p, h, b: (410 if gone.is_set() else 200, 0.0, {}))
    try:
        daemon = daemon_factory()
        api = Api(daemon.url).register()
        # One attempt allowed: the 410 must not burn it into the dead letter.
        pipe = setup(api, receiver.url + "/hook", max_attempts=1)
        [first] = ingest(pipe["ingest"])

        def disabled():
            dest = api.data("GET", pipe["path"])
            return dest if dest["disabled_at"] else None

        dest = wait_for(disabled, timeout=10, what="the destination to be disabled")
        assert dest["disabled_reason"] == "destination answered 410 Gone"
        wait_for(lambda: statuses(db_url, [first]) == ["held"], timeout=5, what="held")
        [second] = ingest(pipe["ingest"])
        wait_for(lambda: statuses(db_url, [second]) == ["held"], timeout=5, what="parked")
        assert receiver.count() == 1
        event = api.data("GET", f"/v1/events/{first}")
        assert event["event"]["status"] == "retry_scheduled"
        assert "disabled: destination answered 410 Gone" in daemon.log()

        gone.clear()
        api.data("PATCH", pipe["path"], {"active": True})
        wait_for(
            lambda: statuses(db_url, [first, second]) == ["succeeded"] * 2,
            timeout=10,
            what="delivered",
        )
        event = api.data("GET", f"/v1/events/{first}")
        assert [a["response_status"] for a in event["attempts"]] == [410, 200]
    finally:
        receiver.close()


def test_rotation_signs_with_both_secrets_during_the_grace_then_only_the_new(
    daemon_factory, db_url
):
    old = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    secrets = {"old": old, "new": None}
    verdicts: list[dict[str, bool]] = []

    def verify(secret: str | None, headers: dict, body: bytes) -> bool:
        if secret is None:
            return False
        try:
            Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
        except WebhookVerificationError:
            return False
        return True

    def respond(n, path, headers, body):
        verdicts.append({name: verify(s, headers, body) for name, s in secrets.items()})
        return 200, 0.0, {}

    receiver = Receiver(respond)
    try:
        daemon = daemon_factory(SECRET_ROTATION_GRACE="3s")
        api = Api(daemon.url).register()
        pipe = setup(api, receiver.url + "/hook", signing_secret=old)
        ingest(pipe["ingest"])
        wait_for(lambda: len(verdicts) == 1, what="the first delivery")
        rotated = api.data("POST", f"{pipe['path']}/rotate-secret", {})
        secrets["new"] = rotated["signing_secret"]
        ingest(pipe["ingest"], 3)
        wait_for(lambda: len(verdicts) == 4, what="deliveries during the grace")
        expires = datetime.datetime.fromisoformat(rotated["previous_secret_expires_at"])
        assert datetime.datetime.now(datetime.UTC) < expires  # they were all in the grace
        wait_for(
            lambda: datetime.datetime.now(datetime.UTC) > expires + datetime.timedelta(seconds=0.2),
            what="the grace to end",
        )
        ingest(pipe["ingest"], 2)
        wait_for(lambda: len(verdicts) == 6, what="deliveries after the grace")
    finally:
        receiver.close()
    assert verdicts[0] == {"old": True, "new": False}
    # During the grace a receiver with only the old secret, or only the new, accepts all.
    assert verdicts[1:4] == [{"old": True, "new": True}] * 3
    assert verdicts[4:] == [{"old": False, "new": True}] * 2
