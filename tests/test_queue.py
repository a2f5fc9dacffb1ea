"""The delivery queue against a real PostgreSQL: claims, leases, fencing, event status.

Rows are made through the real service code (Gateway); several real connections on
threads stand in for several delivery processes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg2
import pytest

from gethookd import queue
from gethookd.db import QUERIES, Database
from gethookd.deliver import RESPONSE_BODY_LIMIT, Outcome
from gethookd.service import Gateway
from gethookd.services.events import as_now
from helpers import EVENTS_NOW, claim_plan, wait_for

LEASE = 60.0
OK = Outcome("success", 200, "ok", None, 5)
FAIL = Outcome("http_5xx", 503, "down", "destination answered HTTP 503", 7)


def run_threads(target, count: int) -> None:
    """target(0..count-1) on real threads at once, each with its own connections."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)


class Pipeline:
    """An account with one source routed to `destinations` destinations."""

    def __init__(self, gw: Gateway, destinations: int = 1, max_attempts: int = 3) -> None:
        self.gw = gw
        account = gw.register("Acme", f"{uuid.uuid4().hex[:8]}@example.com", "pw")["account"]
        self.account_id = account["id"]
        source = gw.create_source(self.account_id, "provider")
        self.token = source["path_token"]
        self.destinations = []
        for i in range(destinations):
            dest = gw.create_destination(self.account_id, f"d{i}", f"http://127.0.0.1:9/{i}")
            gw.create_route(
                self.account_id,
                dest["id"],
                source["id"],
                max_attempts=max_attempts,
                backoff="fixed",
            )
            self.destinations.append(dest["id"])

    def ingest(self, n: int = 1) -> list:
        return [
            self.gw.ingest(self.token, f"event {i}".encode(), {"Content-Type": "text/plain"})["id"]
            for i in range(n)
        ]


def sql(database: Database, query: str, params=None) -> list[dict]:
    with database.transaction() as cur:
        cur.raw.execute(query, params)
        return [dict(r) for r in cur.raw.fetchall()] if cur.raw.description else []


def event(database, event_id) -> dict:
    [row] = sql(database, EVENTS_NOW + " WHERE e.id = %s", (event_id,))
    return as_now(row)


def delivery(database, delivery_id) -> dict:
    [row] = sql(database, "SELECT * FROM deliveries WHERE id = %s", (delivery_id,))
    return row


def attempts(database, delivery_id) -> list[dict]:
    return sql(
        database,
        "SELECT * FROM gethookd_attempts WHERE delivery_id = %s ORDER BY attempt_number",
        (delivery_id,),
    )


# -- claiming ------------------------------------------------------------------------


def test_a_claim_carries_what_sending_needs(gw, database):
    pipe = Pipeline(gw)
    [event_id] = pipe.ingest(1)
    [job] = queue.claim(database, 10, LEASE)
    assert job.event_id == str(event_id)  # ids come as text
    assert job.body == b"event 0" and isinstance(job.body, bytes)
    assert job.content_type == "text/plain"
    assert job.url == "http://127.0.0.1:9/0"
    assert job.attempt_number == 1 and job.max_attempts == 3 and job.backoff == "fixed"
    assert job.signing_secret_enc and job.signing_secret_enc.startswith("v1:")
    row = delivery(database, job.delivery_id)
    assert row["status"] == "in_flight" and str(row["lease_token"]) == job.lease_token
    lease = (row["lease_expires_at"] - row["updated_at"]).total_seconds()
    assert lease == pytest.approx(LEASE, abs=1)
    [attempt] = attempts(database, job.delivery_id)
    assert str(attempt["id"]) == job.attempt_id and attempt["outcome"] == "pending"
    assert queue.claim(database, 10, LEASE) == []  # leased: nobody else gets it


def test_events_deliveries_and_attempts_get_time_ordered_ids(gw, database):
    """Version 7 ids (migrations/0011), their time prefix the moment each row was made:
    rows made together share index pages."""
    pipe = Pipeline(gw, destinations=2)
    before_ms = time.time_ns() // 1_000_000
    first = pipe.ingest(3)
    time.sleep(0.01)
    later = pipe.ingest(1)
    jobs = queue.claim(database, 10, LEASE)
    after_ms = time.time_ns() // 1_000_000
    assert len(jobs) == 8
    rows = sql(database, "SELECT id, event_id FROM deliveries")
    ids = [*first, *later, *(r["id"] for r in rows), *(uuid.UUID(j.attempt_id) for j in jobs)]
    for made in ids:
        assert made.version == 7 and made.variant == uuid.RFC_4122, made
        assert before_ms - 5 <= made.int >> 80 <= after_ms + 5, made  # ms since the epoch
    assert max(first) < later[0]  # a later event sorts after
    for job in jobs:
        made, event_made = uuid.UUID(job.delivery_id).int, uuid.UUID(job.event_id).int
        assert made >> 80 >= event_made >> 80  # made with its event


def test_attempts_go_with_their_delivery_when_a_destination_or_an_event_goes(gw, database):
    """An attempt has no foreign key of its own to its event or destination, nor a delivery
    to its account (migrations/0012): each goes by the cascade through its delivery."""
    pipe = Pipeline(gw, destinations=2)
    first, second = pipe.ingest(2)
    jobs = queue.claim(database, 10, LEASE)
    assert len(jobs) == 4
    queue.finish_batch(database, [queue.Finished(j, FAIL, 30.0) for j in jobs])  # written
    gone, kept = pipe.destinations

    def count(table: str, column: str, value) -> int:
        [row] = sql(database, f"SELECT count(*) AS n FROM {table} WHERE {column} = %s", (value,))
        return row["n"]

    gw.delete_destination(pipe.account_id, gone)
    assert count("deliveries", "destination_id", gone) == 0
    assert count("delivery_attempts", "destination_id", gone) == 0
    assert count("deliveries", "destination_id", kept) == 2
    assert count("delivery_attempts", "destination_id", kept) == 2

    sql(database, "DELETE FROM events WHERE id = %s", (first,))
    assert count("deliveries", "event_id", first) == 0
    assert count("delivery_attempts", "event_id", first) == 0
    assert count("delivery_attempts", "event_id", second) == 1
    assert count("deliveries", "event_id", second) == 1


def test_claim_respects_its_limit(gw, database):
    Pipeline(gw).ingest(5)
    assert len(queue.claim(database, 2, LEASE)) == 2
    assert len(queue.claim(database, 0, LEASE)) == 0
    assert len(queue.claim(database, 10, LEASE)) == 3


def test_concurrent_claimers_never_get_the_same_delivery(gw, database, db_url):
    # 150 events x 2 destinations: siblings share an event row, which claimers also lock.
    pipe = Pipeline(gw, destinations=2)
    pipe.ingest(150)
    everything = {r["id"] for r in sql(database, "SELECT id FROM deliveries")}
    assert len(everything) == 300
    claimers = 6
    start = threading.Barrier(claimers)
    got: list[list[queue.Job]] = [[] for _ in range(claimers)]
    errors: list[BaseException] = []
    deadline = time.monotonic() + 20

    def claimer(i: int) -> None:
        own = Database(db_url, maxconn=1)
        try:
            start.wait()
            while time.monotonic() < deadline and sum(map(len, got)) < 300:
                got[i].extend(queue.claim(own, 7, LEASE))
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    run_threads(claimer, claimers)
    assert not errors, errors
    ids = [job.delivery_id for jobs in got for job in jobs]
    assert len(ids) == len(set(ids)), "a delivery was claimed twice"
    assert set(ids) == {str(i) for i in everything}
    assert sum(1 for jobs in got if jobs) >= 2, "the claimers did not actually overlap"
    assert len({job.lease_token for jobs in got for job in jobs}) == 300
    [counts] = sql(
        database,
        "SELECT count(*) AS attempts, count(DISTINCT delivery_id) AS deliveries,"
        " max(attempt_number) AS highest FROM gethookd_attempts",
    )
    assert counts == {"attempts": 300, "deliveries": 300, "highest": 1}
    statuses = sql(
        database,
        "SELECT DISTINCT gethookd_event_status(e.id, e.status) AS status,"
        " gethookd_event_attempts(e.id, e.attempts_count) AS attempts_count FROM events e",
    )
    assert statuses == [{"status": "delivering", "attempts_count": 2}]


def test_two_claims_at_once_take_different_rows(gw, database, db_url):
    # Claim A has locked its candidates (twice its limit) but not committed when claim B
    # runs: B takes the next ones instead of coming back empty (its process napping with
    # work due).
    Pipeline(gw).ingest(20)
    other = psycopg2.connect(db_url)
    try:
        with other.cursor() as cur:
            cur.execute(QUERIES["claim_deliveries"], queue.claim_params(5, LEASE))
            first = {row[3] for row in cur.fetchall()}  # parked, trimmed, lost, delivery_id
            assert len(first) == 5
            second = queue.claim_fair(database, 5, LEASE)
            assert len(second.jobs) == 5 and second.lost == 0
            assert not first & {job.delivery_id for job in second.jobs}
    finally:
        other.rollback()
        other.close()
    assert len(queue.claim(database, 20, LEASE)) == 15  # A's came back with its rollback


def test_a_claim_says_when_an_event_lock_kept_it_short(gw, database, db_url):
    [event_id] = Pipeline(gw).ingest(1)
    other = psycopg2.connect(db_url)
    try:
        with other.cursor() as cur:
            cur.execute("SELECT 1 FROM events WHERE id = %s FOR UPDATE", (event_id,))
            held = queue.claim_fair(database, 5, LEASE)
            assert held.jobs == [] and held.lost == 1  # more is due: claim again soon
    finally:
        other.rollback()
        other.close()
    [job] = queue.claim(database, 5, LEASE)
    assert job.event_id == str(event_id)


def test_only_due_deliveries_are_claimed(gw, database):
    pipe = Pipeline(gw)
    later, now = pipe.ingest(2)
    sql(
        database,
        "UPDATE deliveries SET next_attempt_at = now() + interval '1 hour' WHERE event_id = %s",
        (later,),
    )
    [job] = queue.claim(database, 10, LEASE)
    assert job.event_id == str(now)
    # A failure scheduled for later is not due either, until its time comes.
    assert queue.finish(database, job, FAIL, retry_in=0.3) == "pending"
    assert queue.claim(database, 10, LEASE) == []
    again = wait_for(lambda: queue.claim(database, 10, LEASE), timeout=5, what="the retry")
    assert [j.delivery_id for j in again] == [job.delivery_id]
    assert again[0].attempt_number == 2
    assert queue.claim(database, 10, LEASE) == []  # the one an hour away is still waiting


def test_oldest_due_first(gw, database):
    pipe = Pipeline(gw)
    ids = pipe.ingest(3)
    for i, event_id in enumerate(ids):  # the last ingested is the most overdue
        sql(
            database,
            "UPDATE deliveries SET next_attempt_at = now() - make_interval(mins => %s)"
            " WHERE event_id = %s",
            (i, event_id),
        )
    assert [j.event_id for j in queue.claim(database, 1, LEASE)] == [str(ids[2])]
    assert [j.event_id for j in queue.claim(database, 2, LEASE)] == [str(ids[1]), str(ids[0])]


def test_an_expired_lease_is_claimed_again_and_its_attempt_cancelled(gw, database):
    pipe = Pipeline(gw)
    [event_id] = pipe.ingest(1)
    [first] = queue.claim(database, 10, lease_seconds=0.3)  # this worker then "dies"
    assert queue.claim(database, 10, LEASE) == []
    [second] = wait_for(lambda: queue.claim(database, 10, LEASE), timeout=5, what="reclaim")
    assert second.delivery_id == first.delivery_id
    assert second.lease_token != first.lease_token
    assert second.attempt_id != first.attempt_id
    assert second.attempt_number == 2
    old, new = attempts(database, first.delivery_id)
    assert str(old["id"]) == first.attempt_id and old["outcome"] == "cancelled"
    assert old["finished_at"] is not None and "lease expired" in old["error_message"]
    assert str(new["id"]) == second.attempt_id and new["outcome"] == "pending"
    assert event(database, event_id)["status"] == "delivering"


def test_an_attempt_is_written_once_when_it_has_finished(gw, database):
    """The claim keeps the open attempt on its delivery (migration 0016): readers see it
    pending, with the id and start the job has; the finish writes it, with that id and
    start, in one row."""
    pipe = Pipeline(gw)
    [event_id] = pipe.ingest(1)
    [job] = queue.claim(database, 10, LEASE)
    assert sql(database, "SELECT count(*) AS n FROM delivery_attempts") == [{"n": 0}]
    [open_] = attempts(database, job.delivery_id)
    assert str(open_["id"]) == job.attempt_id and open_["outcome"] == "pending"
    assert open_["started_at"] == delivery(database, job.delivery_id)["updated_at"]
    [shown] = gw.get_event(pipe.account_id, event_id)["attempts"]
    assert str(shown["id"]) == job.attempt_id and shown["outcome"] == "pending"
    assert shown["finished_at"] is None and shown["attempt_number"] == 1
    assert gw.platform_stats()["delivery_attempts"] == 1

    assert queue.finish(database, job, OK, None) == "succeeded"
    [written] = sql(database, "SELECT * FROM delivery_attempts")
    assert str(written["id"]) == job.attempt_id and written["outcome"] == "success"
    assert written["started_at"] == open_["started_at"] <= written["finished_at"]
    assert (written["response_status"], written["latency_ms"]) == (200, 5)
    assert [str(a["id"]) for a in gw.get_event(pipe.account_id, event_id)["attempts"]] == [
        job.attempt_id
    ]
    assert gw.platform_stats()["delivery_attempts"] == 1


def test_a_pending_attempt_from_before_0016_is_shown_once_and_closed_on_takeover(gw, database):
    """A rolling upgrade: a process from before migration 0016 claims a delivery whose
    attempt_id is left from an attempt already written, and opens its attempt in
    delivery_attempts. Readers show that row once and the written one once; a claim that
    takes over its expired lease closes it, and writes no second row for the stale id."""
    pipe = Pipeline(gw)
    pipe.ingest(1)
    [first] = queue.claim(database, 10, LEASE)
    assert queue.finish(database, first, FAIL, 0.0) == "pending"
    sql(  # as the claim before 0016 did it
        database,
        """
        WITH d AS (
            UPDATE deliveries SET status = 'in_flight', lease_token = gen_random_uuid(),
                lease_expires_at = now() + interval '0.3 seconds',
                attempt_count = attempt_count + 1
            WHERE id = %s RETURNING id, event_id, destination_id, attempt_count
        )
        INSERT INTO delivery_attempts (delivery_id, event_id, destination_id, attempt_number)
        SELECT id, event_id, destination_id, attempt_count FROM d
        """,
        (first.delivery_id,),
    )
    shown = [(a["attempt_number"], a["outcome"]) for a in attempts(database, first.delivery_id)]
    assert shown == [(1, "http_5xx"), (2, "pending")]
    [second] = wait_for(lambda: queue.claim(database, 10, LEASE), timeout=5, what="takeover")
    assert second.attempt_number == 3
    shown = [(a["attempt_number"], a["outcome"]) for a in attempts(database, first.delivery_id)]
    assert shown == [(1, "http_5xx"), (2, "cancelled"), (3, "pending")]
    assert queue.finish(database, second, OK, None) == "succeeded"
    [n] = sql(database, "SELECT count(*) AS n FROM delivery_attempts")
    assert n == {"n": 3}


def test_expired_leases_are_reclaimed_before_new_work(gw, database):
    pipe = Pipeline(gw)
    pipe.ingest(1)
    [abandoned] = queue.claim(database, 10, lease_seconds=0.2)
    pipe.ingest(1)
    wait_for(
        lambda: sql(database, "SELECT 1 FROM deliveries WHERE lease_expires_at < now()"),
        timeout=5,
        what="the lease to expire",
    )
    [job] = queue.claim(database, 1, LEASE)
    assert job.delivery_id == abandoned.delivery_id


def test_a_stale_lease_token_changes_nothing(gw, database):
    pipe = Pipeline(gw)
    [event_id] = pipe.ingest(1)
    [stale] = queue.claim(database, 10, lease_seconds=0.2)
    [current] = wait_for(lambda: queue.claim(database, 10, LEASE), timeout=5, what="reclaim")
    before = (delivery(database, stale.delivery_id), attempts(database, stale.delivery_id))
    before_event = event(database, event_id)

    assert queue.finish(database, stale, OK, None) is None
    assert queue.finish(database, stale, FAIL, retry_in=0) is None
    assert queue.release(database, stale, "stopping") is None
    assert (delivery(database, stale.delivery_id), attempts(database, stale.delivery_id)) == before
    assert event(database, event_id) == before_event

    assert queue.finish(database, current, OK, None) == "succeeded"
    assert queue.finish(database, current, FAIL, None) is None  # a lease is used once
    assert [a["outcome"] for a in attempts(database, current.delivery_id)] == [
        "cancelled",
        "success",
    ]
    assert event(database, event_id)["status"] == "delivered"


# -- recording outcomes and the event's status ------------------------------------------


def test_event_goes_queued_delivering_retry_scheduled_delivered(gw, database):
    pipe = Pipeline(gw, max_attempts=3)
    [event_id] = pipe.ingest(1)
    ev = event(database, event_id)
    assert (ev["status"], ev["attempts_count"], ev["final_state"]) == ("queued", 0, None)

    [job] = queue.claim(database, 10, LEASE)
    ev = event(database, event_id)
    assert (ev["status"], ev["attempts_count"]) == ("delivering", 1)

    assert queue.finish(database, job, FAIL, retry_in=0.05) == "pending"
    ev = event(database, event_id)
    assert (ev["status"], ev["attempts_count"], ev["final_state"]) == ("retry_scheduled", 1, None)
    row = delivery(database, job.delivery_id)
    assert row["status"] == "pending" and row["lease_token"] is None
    assert ev["next_attempt_at"] == row["next_attempt_at"]

    [job] = wait_for(lambda: queue.claim(database, 10, LEASE), timeout=5, what="the retry")
    ev = event(database, event_id)
    assert (ev["status"], ev["attempts_count"]) == ("delivering", 2)

    assert queue.finish(database, job, OK, None) == "succeeded"
    ev = event(database, event_id)
    assert (ev["status"], ev["attempts_count"], ev["final_state"]) == ("delivered", 2, "delivered")
    assert ev["next_attempt_at"] is None
    first, second = attempts(database, job.delivery_id)
    assert (first["outcome"], first["response_status"], first["response_body"]) == (
        "http_5xx",
        503,
        "down",
    )
    assert first["error_message"] == "destination answered HTTP 503"
    assert first["latency_ms"] == 7 and first["finished_at"] is not None
    assert (second["outcome"], second["response_status"], second["latency_ms"]) == (
        "success",
        200,
        5,
    )


def test_readers_see_an_event_delivering_while_the_claim_leaves_its_row_alone(gw, database):
    """The claim does not write the event (migration 0015): the API's event, its lists and
    filters, its stats and a duplicate publish all read it as delivering, with the attempt
    in flight counted, and as what the finish wrote once it is back."""
    from gethookd.services.event_filter import EventFilter

    pipe = Pipeline(gw, destinations=2, max_attempts=3)
    account = pipe.account_id
    event_id, other_id = pipe.ingest(2)
    gw.create_route(account, pipe.destinations[0])  # outbound events go there too
    published, _ = gw.publish(account, "order.paid", '{"n": 1}', "order-1")
    [row] = sql(
        database, "SELECT status, attempts_count, xmin::text FROM events WHERE id = %s", (event_id,)
    )
    jobs = [job for job in queue.claim(database, 10, LEASE) if job.event_id == str(event_id)]
    assert len(jobs) == 2  # both deliveries of the first event, in flight
    [after] = sql(
        database, "SELECT status, attempts_count, xmin::text FROM events WHERE id = %s", (event_id,)
    )
    assert after == row == {**row, "status": "queued", "attempts_count": 0}  # not rewritten

    shown = gw.get_event(account, event_id)["event"]
    assert (shown["status"], shown["attempts_count"]) == ("delivering", 2)

    def listed(status: str) -> set:
        page = gw.list_events(account, 10, event_filter=EventFilter(status=status))
        assert page["total"] == len(page["items"])
        return {str(e["id"]) for e in page["items"]}

    delivering = listed("delivering")
    assert str(event_id) in delivering
    assert str(event_id) not in listed("queued")
    page = gw.list_events(account, 10)
    [item] = [e for e in page["items"] if e["id"] == event_id]
    assert (item["status"], item["attempts_count"]) == ("delivering", 2)
    by_status = {r["status"]: r["count"] for r in gw.stats(account)["by_status"]}
    assert by_status["delivering"] == len(delivering)
    assert "queued" not in by_status  # every queued event is in flight: none reads as queued

    # The other two were claimed too (a claim of 10): all three read as delivering.
    assert delivering == {str(event_id), str(other_id), str(published["id"])}
    again, created = gw.publish(account, "order.paid", '{"n": 1}', "order-1")
    assert not created and again["status"] == "delivering"

    first, second = jobs
    assert queue.finish(database, first, OK, None) == "succeeded"
    shown = gw.get_event(account, event_id)["event"]
    assert (shown["status"], shown["attempts_count"]) == ("delivering", 2)  # one still out
    assert queue.finish(database, second, FAIL, retry_in=30) == "pending"
    shown = gw.get_event(account, event_id)["event"]
    assert (shown["status"], shown["attempts_count"]) == ("retry_scheduled", 2)
    assert str(event_id) in listed("retry_scheduled")
    assert str(event_id) not in listed("delivering")


def test_the_last_failure_dead_letters_the_event(gw, database):
    pipe = Pipeline(gw, max_attempts=2)
    [event_id] = pipe.ingest(1)
    [job] = queue.claim(database, 10, LEASE)
    assert queue.finish(database, job, FAIL, retry_in=0) == "pending"
    [job] = queue.claim(database, 10, LEASE)
    timeout = Outcome("timeout", None, None, "no complete answer within 5s", 5000)
    assert queue.finish(database, job, timeout, retry_in=None) == "dead"
    ev = event(database, event_id)
    assert (ev["status"], ev["final_state"], ev["attempts_count"]) == (
        "dead_letter",
        "dead_letter",
        2,
    )
    assert delivery(database, job.delivery_id)["status"] == "dead"
    assert [a["outcome"] for a in attempts(database, job.delivery_id)] == ["http_5xx", "timeout"]
    assert queue.claim(database, 10, LEASE) == []  # nothing left to do


def test_an_event_with_two_destinations_is_delivered_only_when_both_are(gw, database):
    pipe = Pipeline(gw, destinations=2)
    [event_id] = pipe.ingest(1)
    jobs = queue.claim(database, 10, LEASE)
    assert len(jobs) == 2
    first, second = jobs
    ev = event(database, event_id)
    assert (ev["status"], ev["attempts_count"]) == ("delivering", 2)

    assert queue.finish(database, first, OK, None) == "succeeded"
    assert event(database, event_id)["status"] == "delivering"  # the other is still out
    assert queue.finish(database, second, FAIL, retry_in=0) == "pending"
    ev = event(database, event_id)
    assert (ev["status"], ev["final_state"]) == ("retry_scheduled", None)

    [again] = queue.claim(database, 10, LEASE)
    assert again.delivery_id == second.delivery_id
    assert event(database, event_id)["status"] == "delivering"
    assert queue.finish(database, again, OK, None) == "succeeded"
    ev = event(database, event_id)
    assert (ev["status"], ev["final_state"], ev["attempts_count"]) == ("delivered", "delivered", 3)


def test_one_dead_destination_dead_letters_an_event_the_other_got(gw, database):
    pipe = Pipeline(gw, destinations=2, max_attempts=1)
    [event_id] = pipe.ingest(1)
    first, second = queue.claim(database, 10, LEASE)
    assert queue.finish(database, first, FAIL, None) == "dead"
    assert event(database, event_id)["status"] == "delivering"
    assert queue.finish(database, second, OK, None) == "succeeded"
    ev = event(database, event_id)
    assert (ev["status"], ev["final_state"]) == ("dead_letter", "dead_letter")


def test_response_body_is_stored_capped_and_nul_safe(gw, database):
    pipe = Pipeline(gw)
    pipe.ingest(1)
    [job] = queue.claim(database, 10, LEASE)
    body = ("\x00é" * 50_000) + "tail"  # 150,000 bytes of UTF-8 with NUL characters
    result = Outcome("http_4xx", 400, body, "bad\x00request", 3)
    assert queue.finish(database, job, result, retry_in=60) == "pending"
    [row] = sql(
        database,
        "SELECT octet_length(response_body) AS size, response_body, error_message"
        " FROM delivery_attempts WHERE id = %s",
        (job.attempt_id,),
    )
    assert 0 < row["size"] <= RESPONSE_BODY_LIMIT
    assert "\x00" not in row["response_body"] and row["response_body"].startswith("\ufffdé")
    assert row["error_message"] == "bad\ufffdrequest"


def test_a_batch_of_outcomes_is_stored_as_it_came(gw, database):
    """The finish's rows travel as one JSON text: whatever a destination answers (quotes,
    backslashes, braces and commas of array syntax, control characters, an escape written
    out, text beyond ASCII) is stored as it came, each outcome on its own delivery."""
    pipe = Pipeline(gw)
    pipe.ingest(3)
    jobs = queue.claim(database, 10, LEASE)
    answers = [
        Outcome("http_4xx", 422, '{"error": "bad \\"amount\\"", "path": "C:\\\\x"}', None, 7),
        Outcome("http_5xx", 503, "a,b}{c\n\tNULL\x01 \\u0000 ☃ 𝄞", "upstream: 'down'", 12),
        Outcome("success", 200, "", None, 3),
    ]
    finished = [
        queue.Finished(job, answer, None if answer.ok else 30.0)
        for job, answer in zip(jobs, answers, strict=True)
    ]
    assert queue.finish_many(database, finished) == ["pending", "pending", "succeeded"]
    for job, answer in zip(jobs, answers, strict=True):
        [row] = sql(
            database,
            "SELECT outcome, response_status, response_body, error_message, latency_ms"
            " FROM delivery_attempts WHERE id = %s AND delivery_id = %s",
            (job.attempt_id, job.delivery_id),
        )
        assert tuple(row.values()) == (
            answer.outcome,
            answer.response_status,
            answer.response_body,
            answer.error_message,
            answer.latency_ms,
        )


def test_release_gives_the_lease_back_at_once(gw, database):
    pipe = Pipeline(gw)
    [event_id] = pipe.ingest(1)
    [job] = queue.claim(database, 10, LEASE)
    assert queue.release(database, job, "the delivery process stopped") == "pending"
    [attempt] = attempts(database, job.delivery_id)
    assert attempt["outcome"] == "cancelled"
    assert attempt["error_message"] == "the delivery process stopped"
    assert event(database, event_id)["status"] == "retry_scheduled"
    [again] = queue.claim(database, 10, LEASE)  # due now, not after the lease
    assert again.delivery_id == job.delivery_id and again.attempt_number == 2


def test_a_replayed_event_is_not_retried(gw, database):
    pipe = Pipeline(gw)
    [event_id] = pipe.ingest(1)
    [job] = queue.claim(database, 10, LEASE)
    replay = gw.replay(pipe.account_id, event_id, None)  # while the attempt is in flight
    assert queue.finish(database, job, FAIL, retry_in=0) == "cancelled"
    assert delivery(database, job.delivery_id)["status"] == "cancelled"
    assert event(database, event_id)["status"] == "replayed"
    [replayed] = queue.claim(database, 10, LEASE)  # only the replay's own delivery is left
    assert replayed.event_id == str(replay["replay_event_id"])


# -- many workers at once ----------------------------------------------------------------


def test_workers_claiming_and_finishing_at_once_keep_every_event_consistent(gw, database, db_url):
    """Siblings of one event finish on different connections while others claim; no
    deadlock, no lost update of the event's summary."""
    pipe = Pipeline(gw, destinations=3, max_attempts=5)
    event_ids = pipe.ingest(60)
    workers = 6
    start = threading.Barrier(workers)
    errors: list[BaseException] = []
    deadline = time.monotonic() + 25

    def worker(i: int) -> None:
        own = Database(db_url, maxconn=1)
        try:
            start.wait()
            while time.monotonic() < deadline:
                jobs = queue.claim(own, 4, LEASE)
                if not jobs:
                    left = sql(own, "SELECT 1 FROM deliveries WHERE status <> 'succeeded' LIMIT 1")
                    if not left:
                        return
                for job in jobs:
                    # Every delivery fails its first attempt, then succeeds.
                    result = OK if job.attempt_number > 1 else FAIL
                    status = queue.finish(own, job, result, None if result.ok else 0.0)
                    assert status == ("succeeded" if result.ok else "pending")
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    run_threads(worker, workers)
    assert not errors, errors
    rows = sql(
        database,
        "SELECT gethookd_event_status(e.id, e.status) AS status, final_state,"
        " gethookd_event_attempts(e.id, e.attempts_count) AS attempts_count, count(*) AS n"
        " FROM events e WHERE id = ANY(%s) GROUP BY 1, 2, 3",
        (event_ids,),
    )
    assert rows == [
        {"status": "delivered", "final_state": "delivered", "attempts_count": 6, "n": 60}
    ]
    [outcomes] = sql(
        database,
        "SELECT json_object_agg(outcome, n) AS o FROM"
        " (SELECT outcome, count(*) AS n FROM delivery_attempts GROUP BY outcome) s",
    )
    assert outcomes["o"] == {"http_5xx": 180, "success": 180}


# -- the claim's cost does not grow with the backlog ---------------------------------------


def _claim_buffers(database: Database, limit: int) -> int:
    """Shared buffers one claim touches (EXPLAIN ANALYZE runs it; rolled back after)."""
    top = claim_plan(database.dsn, limit, LEASE)
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"]


def test_a_claim_reads_a_few_rows_not_the_whole_backlog(gw, database):
    pipe = Pipeline(gw)
    [seed] = pipe.ingest(1)
    account, dest = pipe.account_id, pipe.destinations[0]
    # 30,000 due deliveries, and 30,000 in flight with live leases.
    sql(
        database,
        """
        WITH ev AS (
            INSERT INTO events (account_id, direction, body, status)
            SELECT %(a)s, 'inbound', 'x', 'queued' FROM generate_series(1, 60000)
            RETURNING id
        )
        INSERT INTO deliveries (event_id, destination_id, account_id, max_attempts, status,
                                lease_token, lease_expires_at, next_attempt_at)
        SELECT id, %(d)s, %(a)s, 3,
               CASE WHEN n %% 2 = 0 THEN 'pending' ELSE 'in_flight' END,
               CASE WHEN n %% 2 = 0 THEN NULL ELSE gen_random_uuid() END,
               CASE WHEN n %% 2 = 0 THEN NULL ELSE now() + interval '1 hour' END,
               now() - make_interval(secs => n)
        FROM (SELECT id, row_number() OVER () AS n FROM ev) s
        """,
        {"a": account, "d": dest},
    )
    sql(database, "ANALYZE deliveries; ANALYZE events")
    buffers = _claim_buffers(database, 10)
    # Ten claimed rows with their events, attempts and indexes take about 350 buffers; a
    # plan that gathers and sorts every due row reads over 1,500 here.
    assert buffers < 700, f"a claim of 10 touched {buffers} buffers"
    assert seed


def _writes(database: Database, table: str) -> tuple[int, int, int]:
    """(inserts, updates, HOT updates) of `table` so far in this database, as the
    statistics say once this backend's pending counts are reported."""
    with database.transaction() as cur:
        cur.raw.execute("SELECT 1 FROM pg_proc WHERE proname = 'pg_stat_force_next_flush'")
        if cur.raw.fetchone():
            cur.raw.execute("SELECT pg_stat_force_next_flush()")
    if int(sql(database, "SHOW server_version_num")[0]["server_version_num"]) < 150000:
        time.sleep(1.0)  # reported within half a second by older servers
    [row] = sql(
        database,
        "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = %s",
        (table,),
    )
    return row["n_tup_ins"], row["n_tup_upd"], row["n_tup_hot_upd"]


def test_an_event_is_written_once_by_its_delivery_and_on_its_own_page(gw, database):
    """The claim leaves the event alone (its status while in flight is read: migration
    0015); the finish writes its summary. Its status and counts are in no index, so that
    update can stay on the event's page (HOT), with no entry in any of its five indexes, if
    the page has room: ingest packed pages full, so most went elsewhere (83 of these 600
    HOT without migration 0014); 0014 keeps room. Half here, not all: a finish of 50 in order
    of arrival rewrites most of a page's events at once, more than its free quarter holds.
    Each attempt is one row written once, when it has finished (migration 0016)."""
    pipe = Pipeline(gw)
    pipe.ingest(600)
    one = Database(database.dsn, maxconn=1)  # its statistics are the ones flushed
    try:
        before = _writes(one, "events"), _writes(one, "delivery_attempts")
        done = 0
        while jobs := queue.claim(one, 50, LEASE):
            queue.finish_batch(one, [queue.Finished(job, OK, None) for job in jobs])
            done += len(jobs)
        after = _writes(one, "events"), _writes(one, "delivery_attempts")
    finally:
        one.close()
    (_, updates, hot), attempts = (
        tuple(a - b for a, b in zip(now, then, strict=True))
        for now, then in zip(after, before, strict=True)
    )
    assert done == 600
    assert updates == 600  # the finish's: the claim wrote none
    assert hot >= 0.4 * updates, f"{hot} of {updates} updates of events were HOT"
    assert attempts == (600, 0, 0)  # inserted once each, never updated


def _grow(cur, account, dest, status: str, attempts: bool = True) -> None:
    """60,000 events with a delivery each, whose status is the SQL expression `status` of
    its number n (a literal % written %%), and (unless not `attempts`) an attempt each:
    open on its delivery while it is in flight (with a live lease), else written, finished
    (migration 0016)."""
    cur.execute(
        f"""
        WITH ev AS (
            INSERT INTO events (account_id, direction, body, status)
            SELECT %(a)s, 'inbound', 'x', 'delivering' FROM generate_series(1, 60000)
            RETURNING id
        ), d AS (
            INSERT INTO deliveries (event_id, destination_id, account_id, max_attempts,
                                    status, attempt_count, lease_token, lease_expires_at,
                                    next_attempt_at, attempt_id, attempt_started_at)
            SELECT id, %(d)s, %(a)s, 3, status, 1,
                   CASE WHEN status = 'in_flight' THEN gen_random_uuid() END,
                   CASE WHEN status = 'in_flight' THEN now() + interval '1 hour' END,
                   now() - make_interval(secs => n),
                   CASE WHEN status = 'in_flight' AND %(attempts)s THEN gethookd_uuid7() END,
                   CASE WHEN status = 'in_flight' AND %(attempts)s THEN now() END
            FROM (SELECT id, n, {status} AS status
                  FROM (SELECT id, row_number() OVER () AS n FROM ev) numbered) s
            RETURNING id, event_id, status
        )
        INSERT INTO delivery_attempts (delivery_id, event_id, destination_id, attempt_number,
                                       outcome, finished_at)
        SELECT id, event_id, %(d)s, 1, 'http_5xx', now()
        FROM d WHERE %(attempts)s AND status <> 'in_flight'
        """,
        {"a": account, "d": dest, "attempts": attempts},
    )


def _cost_after_growth(
    database, name: str, planned_with: dict, grow, run_with
) -> tuple[int, float]:
    """Shared buffers one run of the prepared statement `name` touches, and the rows its
    scans read (see _plans_after_growth and _rows_read)."""
    plans = _plans_after_growth(database, name, planned_with, grow, run_with)
    buffers = sum(top["Shared Hit Blocks"] + top["Shared Read Blocks"] for top in plans)
    return buffers, _rows_read(plans)


def _plans_after_growth(database, name: str, planned_with: dict, grow, run_with) -> list:
    """The executed plans (EXPLAIN ANALYZE, JSON, one per statement) of one run of the
    prepared statement `name` (rolled back after), its generic plans made and cached on
    the tables as they are, before grow(cursor) adds to them; run_with(cursor) gives the
    run's parameters. As the queue runs it: PLAN_BY_KEY first, in the same transaction."""
    from gethookd.db import Prepared, connect

    statement = Prepared(name, QUERIES[name])
    executes = statement.execute.split(";\n")
    conn = connect(database.dsn, autocommit=True)
    try:
        with conn.cursor() as cur:
            for prepare in statement.prepare:
                cur.execute(prepare)
            cur.execute("SET plan_cache_mode = force_generic_plan")
            for execute in executes:  # EXPLAIN alone makes the generic plan and keeps it
                cur.execute(queue.PLAN_BY_KEY + "EXPLAIN " + execute, planned_with)
            grow(cur)
            params = run_with(cur)
            cur.execute("BEGIN")
            cur.execute(queue.PLAN_BY_KEY)
            plans = []
            for execute in executes:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + execute, params)
                [[plan]] = cur.fetchall()
                plans.append((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
            cur.execute("ROLLBACK")
    finally:
        conn.close()
    return plans


def _rows_read(plans: list) -> float:
    """Rows the plans' table and index scans read, over all their loops: a batch joined to
    a table by key reads each row once; a plan that looks the whole batch up again for
    each row of it (a nested loop whose inner scan has only `= ANY(batch)`) reads the
    batch's square, in a few buffers when the keys sit side by side."""
    return sum(
        (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
        for plan in plans
        for node in _nodes(plan)
        if node["Node Type"] in ("Index Scan", "Index Only Scan", "Seq Scan", "Bitmap Heap Scan")
    )


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


@pytest.mark.parametrize("analyzed", [False, True], ids=["never-analyzed", "analyzed-empty"])
def test_a_prepared_claim_planned_on_empty_tables_still_reads_a_few_rows(gw, database, analyzed):
    """The claim runs prepared; its generic plan, made while the tables were nearly empty,
    is kept (for a while: db.REPREPARE_FIRST, up to REPREPARE_AFTER) as they grow. It must
    still walk the due index, look each row up by key once, and leave delivery_attempts
    alone when no lease expired. Made on tables analyzed while empty (a new install, a
    benchmark's fresh database), the plan took each table for one row: a claim of 10 read
    360,779 buffers (every attempt, every delivery, every event), until every table was
    read by key in a way no plan can change."""
    pipe = Pipeline(gw)
    if analyzed:
        sql(database, "ANALYZE")
    args = queue.claim_params(10, LEASE)
    buffers, rows = _cost_after_growth(
        database,
        "claim_deliveries",
        args,
        # 30,000 due (each attempt finished), 30,000 in flight with live leases.
        lambda cur: _grow(
            cur,
            pipe.account_id,
            pipe.destinations[0],
            "CASE WHEN n %% 2 = 0 THEN 'pending' ELSE 'in_flight' END",
        ),
        lambda cur: args,
    )
    # As planned per call (test above): about 350 buffers for ten. Sorting every due row,
    # or scanning delivery_attempts, reads thousands.
    assert buffers < 700, f"a prepared claim of 10 touched {buffers} buffers"
    # About 100 rows: 20 candidates, their destinations, and 6 lookups per claimed row.
    # Looking the whole batch up again per row adds 90 per such join.
    assert rows <= 120, f"a prepared claim of 10 read {rows} rows"
    assert len(queue.claim(database, 10, LEASE)) == 10


@pytest.mark.parametrize("fresh", [False, True], ids=["with-history", "no-attempts-yet"])
def test_a_prepared_finish_looks_each_row_up_once_with_many_in_flight(gw, database, fresh):
    """Planned on statistics taken while nothing was in flight (a backlog just queued and
    analyzed), a finish of 200 with 600 in flight (two busy delivery processes) must look
    each row up by key, not read every leased row and match it against the whole batch
    (600 x 200: 300 ms a finish in bench/delivery.py case c). With no attempt yet when the
    tables were analyzed (bench/delivery.py's fresh database), the plan must not read the
    batch's attempts once per row of it either (1,275 read to record 50 there)."""
    pipe = Pipeline(gw)
    account, dest = pipe.account_id, pipe.destinations[0]
    with database.transaction() as cur:
        _grow(cur.raw, account, dest, "'pending'", attempts=not fresh)
    sql(database, "ANALYZE" if fresh else "ANALYZE deliveries")
    jobs: list = []

    def claim_600(_cur) -> None:
        jobs.extend(job for _ in range(3) for job in queue.claim(database, 200, LEASE))

    plans = _plans_after_growth(
        database,
        "finish_deliveries",
        queue.finish_params([]),
        claim_600,
        lambda _cur: queue.finish_params([queue.Finished(job, OK, None) for job in jobs[:200]]),
    )
    assert len(jobs) == 600
    assert plans[-1]["Actual Rows"] == 200  # the last statement: every delivery recorded
    scans = [
        node
        for plan in plans
        for node in _nodes(plan)
        if node["Node Type"] == "CTE Scan" and node.get("CTE Name") in ("input", "fenced")
    ]
    assert scans
    rescanned = [(n["CTE Name"], n["Actual Loops"]) for n in scans if n["Actual Loops"] > 1]
    assert not rescanned, f"the batch was scanned once per other row: {rescanned}"
    # Nor a table looked up for the whole batch once per row of it (1,275 attempts read
    # for a finish of 50 in bench/delivery.py): about 6 rows read per recorded row.
    rows = _rows_read(plans)
    assert rows <= 10 * 200, f"a finish of 200 read {rows} rows"


@pytest.mark.parametrize("analyzed", [False, True], ids=["never-analyzed", "analyzed-empty"])
def test_a_prepared_finish_planned_on_empty_tables_still_reads_a_few_rows(gw, database, analyzed):
    """As the claim above: the finish's generic plans, made while the tables were nearly
    empty, must still look its rows up by key once the history is large (60,000 events
    delivered; in flight, as always, only what the delivery processes hold: ten)."""
    pipe = Pipeline(gw)
    if analyzed:
        sql(database, "ANALYZE")
    account, dest = pipe.account_id, pipe.destinations[0]

    def in_flight(cur) -> dict:
        cur.execute(
            # The ids as text, as the claim returns a job's.
            "SELECT d.id::text, d.lease_token::text, d.attempt_id::text, d.event_id::text"
            " FROM deliveries d WHERE d.status = 'in_flight'"
        )
        jobs = [
            queue.Job(
                delivery_id=delivery_id,
                lease_token=token,
                attempt_id=attempt,
                attempt_number=1,
                max_attempts=3,
                backoff="exponential",
                event_id=event_id,
                account_id=str(account),
                event_type=None,
                direction="inbound",
                body=b"x",
                content_type=None,
                destination_id=str(dest),
                url="http://x",
                timeout_seconds=30,
                signing_secret_enc=None,
                previous_signing_secret_enc=None,
                auth_config_enc=None,
                custom_headers=None,
            )
            for delivery_id, token, attempt, event_id in cur.fetchall()
        ]
        assert len(jobs) == 10
        return queue.finish_params([queue.Finished(job, OK, None) for job in jobs])

    buffers, rows = _cost_after_growth(
        database,
        "finish_deliveries",
        queue.finish_params([]),
        lambda cur: _grow(
            cur, account, dest, "CASE WHEN n <= 10 THEN 'in_flight' ELSE 'succeeded' END"
        ),
        in_flight,
    )
    # Analyzed empty, the plans read every delivery, attempt and destination: 23,098.
    assert buffers < 700, f"a prepared finish of 10 touched {buffers} buffers"
    # About 60 rows: 6 lookups per recorded row.
    assert rows <= 100, f"a prepared finish of 10 read {rows} rows"


def test_claims_and_finishes_of_one_run_their_generic_plans_over_a_long_history(
    gw, database, db_url
):
    """Left to itself the plan cache planned every finish of one delivery anew once the
    history was large (its generic plan's estimate above the plan made for one row): 2.3 ms
    of PostgreSQL's CPU a finish. The queue's statements always run the generic plans that
    the tests above keep right at any size."""
    pipe = Pipeline(gw)
    with database.transaction() as cur:
        _grow(cur.raw, pipe.account_id, pipe.destinations[0], "'succeeded'")
    sql(database, "ANALYZE deliveries; ANALYZE events; ANALYZE delivery_attempts")
    pipe.ingest(8)
    one = Database(db_url, maxconn=1)  # every call on one connection, whose plans are read
    try:
        for _ in range(8):
            [job] = queue.claim(one, 1, LEASE)
            assert queue.finish(one, job, OK, None) == "succeeded"
        with one.transaction() as cur:
            cur.raw.execute(
                "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE name LIKE 'gethookd_claim%%' OR name LIKE 'gethookd_finish%%'"
            )
            plans = {r["name"]: (r["generic_plans"], r["custom_plans"]) for r in cur.raw}
    finally:
        one.close()
    assert len(plans) == 4  # the claim, and the finish's three statements
    assert all(custom == 0 and generic == 8 for generic, custom in plans.values()), plans


def _wal_writes(one: Database) -> int:
    """WAL writes this connection's backend made itself (PostgreSQL 18's per-backend I/O
    statistics; its pending counts are reported when the forcing transaction ends)."""
    with one.transaction() as cur:
        cur.raw.execute("SELECT pg_stat_force_next_flush()")
    with one.transaction() as cur:
        cur.raw.execute(
            "SELECT COALESCE(sum(writes), 0) AS n FROM pg_stat_get_backend_io(pg_backend_pid())"
            " WHERE object = 'wal'"
        )
        return int(cur.raw.fetchone()["n"])


def test_a_claim_does_not_wait_for_its_commit_to_be_flushed_and_a_finish_does(gw, database, db_url):
    """A claim lost in a server crash leaves its deliveries pending and due, claimed again:
    it need not wait for the disk, which took that wait off the path from ingest to
    delivery. A finish records an outcome and waits, as every commit did before."""
    version = int(sql(database, "SHOW server_version_num")[0]["server_version_num"])
    if version < 180000:
        pytest.skip("per-backend I/O statistics are PostgreSQL 18's")
    if sql(database, "SHOW synchronous_commit")[0]["synchronous_commit"] != "on":
        pytest.skip("the server does not wait for any commit to be flushed")
    pipe = Pipeline(gw)
    pipe.ingest(5)
    one = Database(db_url, maxconn=1)  # every call on one connection, whose writes are read
    try:
        before = _wal_writes(one)
        jobs = [job for _ in range(5) for job in queue.claim(one, 1, LEASE)]
        claimed = _wal_writes(one)
        for job in jobs:
            assert queue.finish(one, job, OK, None) == "succeeded"
        finished = _wal_writes(one)
    finally:
        one.close()
    assert len(jobs) == 5
    assert claimed - before == 0, "a claim waited for its commit to be written"
    assert finished - claimed >= 1, "the finishes did not wait for their commits"
