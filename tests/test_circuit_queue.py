"""The queue's side of fairness and the circuit breaker, statement by statement against a
real PostgreSQL: the claim's per-destination allowance, the batched finish opening and
closing circuits, and the cool-down step releasing exactly one probe."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from test_batching import LEASE, Setup, sql

from gethookd import queue, retry
from gethookd.deliver import Outcome

OK = Outcome("success", 200, "ok", None, 3)
FAIL = Outcome("http_5xx", 503, "down", "HTTP 503", 4)
GONE = Outcome("http_4xx", 410, "gone", "HTTP 410", 4)
CIRCUIT = queue.Circuit(threshold=3, cooldown=60.0, cooldown_max=600.0, disable_after=3600.0)


def dest_row(database, dest_id) -> dict:
    return sql(database, "SELECT * FROM destinations WHERE id = %s", (dest_id,))[0]


def statuses(database, dest_id) -> dict[str, int]:
    rows = sql(
        database,
        "SELECT status, count(*) AS n FROM deliveries WHERE destination_id = %s GROUP BY 1",
        (dest_id,),
    )
    return {r["status"]: r["n"] for r in rows}


def test_the_claim_gives_no_destination_more_than_its_allowance(gw, database):
    setup = Setup(gw, destinations=2)
    setup.ingest(10)  # 10 due deliveries to each destination, interleaved
    a, b = setup.dests
    claimed = queue.claim_fair(database, 10, LEASE, cap=3, busy={a: 2})
    per_dest = {d: sum(j.destination_id == str(d) for j in claimed.jobs) for d in (a, b)}
    assert per_dest == {a: 1, b: 3}
    assert claimed.trimmed > 0  # more was due: the worker claims again at once
    # A destination at its cap is not even a candidate; the other still is.
    again = queue.claim_fair(database, 10, LEASE, cap=3, busy={a: 3, b: 3})
    assert again.jobs == [] and again.trimmed == 0
    more = queue.claim_fair(database, 10, LEASE, cap=3, busy={a: 3, b: 1})
    assert {j.destination_id for j in more.jobs} == {str(b)} and len(more.jobs) == 2


def test_a_circuit_opens_holds_releases_one_probe_and_closes(gw, database):
    setup = Setup(gw)
    [dest] = setup.dests
    setup.ingest(6)
    jobs = queue.claim_fair(database, 3, LEASE).jobs
    recorded = queue.finish_batch(database, [queue.Finished(j, FAIL, 0.0) for j in jobs], CIRCUIT)
    # The third failure in a row opens it: the batch's retries are held; the waiting ones
    # are parked by the claim that meets them (the finish never rewrites the backlog).
    assert recorded.statuses == ["held"] * 3
    [change] = recorded.transitions
    assert change["circuit_state"] == "open" and change["consecutive_failures"] == 3
    assert statuses(database, dest) == {"held": 3, "pending": 3}
    row = dest_row(database, dest)
    assert row["circuit_state"] == "open" and row["failing_since"] is not None
    claimed = queue.claim_fair(database, 10, LEASE)
    assert (claimed.jobs, claimed.parked) == ([], 3)
    assert statuses(database, dest) == {"held": 6}
    assert queue.release_probes(database, 120.0) == 0  # cooling down
    attempts = sql(database, "SELECT sum(attempt_count) AS n FROM deliveries")[0]["n"]
    assert attempts == 3  # held, not attempted

    sql(database, "UPDATE destinations SET circuit_open_until = now() - interval '1 second'")
    with ThreadPoolExecutor(4) as pool:  # several delivery processes at once
        released = list(pool.map(lambda _: queue.release_probes(database, 120.0), range(4)))
    assert sum(released) == 1
    [probe] = queue.claim(database, 10, LEASE)
    assert str(dest_row(database, dest)["circuit_probe_id"]) == probe.delivery_id
    assert queue.claim(database, 10, LEASE) == []  # only the probe

    # The probe fails: re-opened, the cool-down doubled.
    recorded = queue.finish_batch(database, [queue.Finished(probe, FAIL, 0.0)], CIRCUIT)
    assert recorded.statuses == ["held"]
    row = sql(
        database,
        "SELECT circuit_state, circuit_opens,"
        " EXTRACT(EPOCH FROM circuit_open_until - now()) AS left FROM destinations",
    )[0]
    assert row["circuit_state"] == "open" and row["circuit_opens"] == 2
    assert 100 < row["left"] <= 120

    sql(database, "UPDATE destinations SET circuit_open_until = now() - interval '1 second'")
    assert queue.release_probes(database, 120.0) == 1
    [probe] = queue.claim(database, 10, LEASE)
    recorded = queue.finish_batch(database, [queue.Finished(probe, OK, None)], CIRCUIT)
    assert recorded.statuses == ["succeeded"]
    assert recorded.transitions[0]["circuit_state"] == "closed"
    row = dest_row(database, dest)
    assert (row["circuit_state"], row["consecutive_failures"], row["circuit_opens"]) == (
        "closed",
        0,
        0,
    )
    assert row["last_success_at"] is not None and row["failing_since"] is None
    assert row["releasing_since"] is not None  # its held deliveries: released in the background
    assert statuses(database, dest) == {"held": 5, "succeeded": 1}
    assert queue.release_held(database).counts == {dest: 5}
    assert statuses(database, dest) == {"pending": 5, "succeeded": 1}
    assert len(queue.claim(database, 10, LEASE)) == 5


def test_a_410_disables_and_holds_even_the_last_attempt(gw, database):
    setup = Setup(gw)  # max_attempts=3
    [dest] = setup.dests
    setup.ingest(2)
    first, second = queue.claim(database, 10, LEASE)
    recorded = queue.finish_batch(
        database, [queue.Finished(first, GONE, 0.0), queue.Finished(second, OK, None)], CIRCUIT
    )
    assert recorded.statuses == ["held", "succeeded"]
    row = dest_row(database, dest)
    assert row["disabled_reason"] == "destination answered 410 Gone"
    assert row["circuit_state"] == "closed"  # a success in the same batch; still disabled
    setup.ingest(1)
    assert queue.claim(database, 10, LEASE) == []
    assert statuses(database, dest) == {"held": 2, "succeeded": 1}  # queued held, not sent
    gw.update_destination(setup.account, dest, {"active": True})
    row = dest_row(database, dest)
    assert row["disabled_at"] is None and row["disabled_reason"] is None
    assert queue.release_held(database).total == 2
    assert len(queue.claim(database, 10, LEASE)) == 2


def test_retry_after_waits_at_least_as_asked_and_at_most_the_cap():
    assert retry.with_retry_after(0.5, 4.0, 3600.0) == 4.0
    assert retry.with_retry_after(30.0, 4.0, 3600.0) == 30.0
    assert retry.with_retry_after(0.5, 86400.0, 3600.0) == 3600.0
