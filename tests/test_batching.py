"""Outcomes recorded in batches, and deliveries held out of the claim's path: every
guarantee of the one-at-a-time queue still holds (real PostgreSQL, no mocks)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from gethookd import queue
from gethookd.db import Database
from gethookd.deliver import Outcome
from gethookd.service import Gateway
from gethookd.services.events import as_now
from helpers import EVENTS_NOW, claim_plan, vacuums_of_deliveries, wait_for

LEASE = 60
OK = Outcome("success", 200, "ok", None, 3)
FAIL = Outcome("http_5xx", 503, "down", "HTTP 503", 4)


def sql(database: Database, query: str, params=None) -> list[dict]:
    with database.transaction() as cur:
        cur.raw.execute(query, params)
        return [dict(r) for r in cur.raw.fetchall()] if cur.raw.description else []


class Setup:
    """An account, a source, `destinations` routed destinations."""

    def __init__(self, gw: Gateway, destinations: int = 1) -> None:
        self.gw = gw
        email = f"{uuid.uuid4().hex[:8]}@example.com"
        self.account = gw.register("Acme", email, None)["account"]["id"]
        source = gw.create_source(self.account, "provider")
        self.token = source["path_token"]
        self.dests = []
        for i in range(destinations):
            dest = gw.create_destination(self.account, f"d{i}", f"http://127.0.0.1:9/{i}")
            gw.create_route(self.account, dest["id"], source["id"], max_attempts=3)
            self.dests.append(dest["id"])

    def ingest(self, n: int = 1) -> list:
        headers = {"Content-Type": "application/json"}
        return [self.gw.ingest(self.token, b'{"n":%d}' % i, headers)["id"] for i in range(n)]

    def pause(self, index: int = 0, hold: bool = True) -> None:
        """PATCH active=false; with `hold`, then the background hold run to its end, as the
        delivery processes run it."""
        self.gw.update_destination(self.account, self.dests[index], {"active": False})
        while hold and queue.hold_waiting(self.gw.db).more:
            pass

    def resume(self, index: int = 0) -> None:
        self.gw.update_destination(self.account, self.dests[index], {"active": True})


def event(database, event_id) -> dict:
    return as_now(sql(database, EVENTS_NOW + " WHERE e.id = %s", (event_id,))[0])


def deliveries_of(database, event_ids) -> list[dict]:
    return sql(
        database,
        "SELECT * FROM deliveries WHERE event_id = ANY(%s) ORDER BY next_attempt_at",
        (list(event_ids),),
    )


# -- batched, fenced outcomes ------------------------------------------------------------------


def test_a_batch_records_every_outcome_and_summarises_each_event_once(gw, database):
    setup = Setup(gw, destinations=2)
    a, b, c = setup.ingest(3)
    jobs = queue.claim(database, 10, LEASE)
    assert len(jobs) == 6
    results = {
        # a: both succeed in the same batch; b: one of two fails; c: one dies, one succeeds
        a: [(OK, None), (OK, None)],
        b: [(OK, None), (FAIL, 30.0)],
        c: [(FAIL, None), (OK, None)],
    }
    batch = []
    for event_id, outcomes in results.items():
        mine = [j for j in jobs if j.event_id == str(event_id)]  # ids come as text
        for job, (result, retry_in) in zip(mine, outcomes, strict=True):
            batch.append(queue.Finished(job, result, retry_in))
    statuses = queue.finish_many(database, batch)
    assert statuses == ["succeeded", "succeeded", "succeeded", "pending", "dead", "succeeded"]
    ea, eb, ec = (event(database, e) for e in (a, b, c))
    assert (ea["status"], ea["final_state"], ea["attempts_count"]) == ("delivered", "delivered", 2)
    assert (eb["status"], eb["final_state"]) == ("retry_scheduled", None)
    assert eb["next_attempt_at"] is not None
    assert (ec["status"], ec["final_state"]) == ("dead_letter", "dead_letter")
    outcomes = sql(database, "SELECT outcome, count(*) AS n FROM delivery_attempts GROUP BY 1")
    assert {r["outcome"]: r["n"] for r in outcomes} == {"success": 4, "http_5xx": 2}


def test_a_lost_lease_in_a_batch_changes_nothing_of_its_own(gw, database):
    setup = Setup(gw)
    setup.ingest(3)
    first = queue.claim(database, 10, lease_seconds=0.3)
    assert len(first) == 3
    stale = first[1]
    # Only the middle one's lease runs out and is taken over by another process.
    sql(
        database,
        "UPDATE deliveries SET lease_expires_at = now() + interval '1 hour'"
        " WHERE status = 'in_flight' AND id <> %s",
        (stale.delivery_id,),
    )
    [takeover] = wait_for(lambda: queue.claim(database, 10, LEASE), timeout=5, what="reclaim")
    assert takeover.delivery_id == stale.delivery_id
    statuses = queue.finish_many(database, [queue.Finished(j, OK, None) for j in first])
    assert statuses == ["succeeded", None, "succeeded"]
    [row] = sql(database, "SELECT * FROM deliveries WHERE id = %s", (stale.delivery_id,))
    assert row["status"] == "in_flight" and str(row["lease_token"]) == takeover.lease_token
    old, new = sql(
        database,
        "SELECT * FROM gethookd_attempts WHERE delivery_id = %s ORDER BY attempt_number",
        (stale.delivery_id,),
    )
    assert old["outcome"] == "cancelled" and old["response_status"] is None  # not overwritten
    assert new["outcome"] == "pending"
    assert event(database, stale.event_id)["status"] == "delivering"
    assert queue.finish_many(database, [queue.Finished(takeover, OK, None)]) == ["succeeded"]
    assert event(database, stale.event_id)["status"] == "delivered"


def test_a_retry_due_at_once_is_claimable_again(gw, database):
    Setup(gw).ingest(1)
    [job] = queue.claim(database, 10, LEASE)
    assert queue.finish_many(database, [queue.Finished(job, FAIL, 0.0)]) == ["pending"]
    [again] = queue.claim(database, 10, LEASE)
    assert again.delivery_id == job.delivery_id and again.attempt_number == 2


# -- held deliveries ---------------------------------------------------------------------------


def test_pause_holds_waiting_deliveries_and_resume_releases_them_in_order(gw, database):
    setup = Setup(gw, destinations=2)
    ids = setup.ingest(3)
    before = {d["id"]: d["next_attempt_at"] for d in deliveries_of(database, ids)}
    setup.pause(0, hold=False)
    # Held in the background (the delivery processes' step), not by the PATCH.
    assert {d["status"] for d in deliveries_of(database, ids)} == {"pending"}
    assert queue.hold_waiting(database).counts == {setup.dests[0]: 3}
    rows = deliveries_of(database, ids)
    held = [d for d in rows if d["destination_id"] == setup.dests[0]]
    assert {d["status"] for d in held} == {"held"} and len(held) == 3
    assert {e: event(database, e)["status"] for e in ids} == dict.fromkeys(ids, "queued")
    # Only the active destination's deliveries are claimed; nothing is parked.
    claimed = queue.claim_fair(database, 10, LEASE)
    jobs, parked = claimed.jobs, claimed.parked
    assert parked == 0 and {j.destination_id for j in jobs} == {str(setup.dests[1])}
    assert len(jobs) == 3
    for job in jobs:
        queue.finish(database, job, OK, None)
    # Still waiting (as a sibling's pending delivery would be, once attempts were made).
    assert {event(database, e)["status"] for e in ids} == {"retry_scheduled"}
    setup.resume(0)
    # Released in the background (the delivery processes' release step), not by the PATCH.
    rows = deliveries_of(database, ids)
    assert {d["status"] for d in rows if d["destination_id"] == setup.dests[0]} == {"held"}
    assert queue.release_held(database).counts == {setup.dests[0]: 3}
    rows = deliveries_of(database, ids)
    mine = [d for d in rows if d["destination_id"] == setup.dests[0]]
    assert {d["status"] for d in mine} == {"pending"}
    assert all(d["next_attempt_at"] == before[d["id"]] for d in mine)  # kept, not reset
    jobs = queue.claim(database, 10, LEASE)
    assert [j.event_id for j in jobs] == [str(i) for i in ids]  # oldest first, as before the pause
    for job in jobs:
        queue.finish(database, job, OK, None)
    assert {event(database, e)["status"] for e in ids} == {"delivered"}


def releasing_since(database, dest_id):
    [row] = sql(database, "SELECT releasing_since FROM destinations WHERE id = %s", (dest_id,))
    return row["releasing_since"]


def test_a_resume_releases_in_chunks_oldest_first_and_looks_again_for_its_grace(gw, database):
    setup = Setup(gw)
    [dest] = setup.dests
    ids = setup.ingest(25)
    setup.pause(0)
    setup.resume(0)
    order = [d["id"] for d in deliveries_of(database, ids)]  # oldest first
    steps = [queue.release_held(database, chunk=10) for _ in range(3)]
    assert [(r.counts, r.more) for r in steps] == [
        ({dest: 10}, True),
        ({dest: 10}, True),
        ({dest: 5}, False),
    ]
    assert [j.delivery_id for j in queue.claim(database, 10, LEASE)] == [str(i) for i in order[:10]]
    # Nothing left, but within its grace the destination is looked at again: a delivery
    # inserted 'held' by an ingest that read the destination just before the resume (here
    # made held behind the API's back) is released too.
    assert releasing_since(database, dest) is not None
    assert queue.release_held(database, chunk=10).counts == {}
    sql(database, "UPDATE deliveries SET status = 'held' WHERE id = %s", (order[-1],))
    assert queue.release_held(database, chunk=10).counts == {dest: 1}
    # After its grace, a step that finds nothing held clears the flag.
    assert queue.release_held(database, grace=0.0).counts == {}
    assert releasing_since(database, dest) is None


def holding(database, dest_id):
    [row] = sql(
        database, "SELECT holding_since, holding_after FROM destinations WHERE id = %s", (dest_id,)
    )
    return row


def test_a_pause_holds_in_chunks_oldest_first_and_the_claim_never_sends_meanwhile(gw, database):
    setup = Setup(gw, destinations=2)
    paused, active = setup.dests
    ids = setup.ingest(25)
    order = [d["id"] for d in deliveries_of(database, ids) if d["destination_id"] == paused]
    setup.pause(0, hold=False)
    assert holding(database, paused)["holding_since"] is not None
    first = queue.hold_waiting(database, chunk=10)
    assert (first.counts, first.more) == ({paused: 10}, True)
    statuses = {d["id"]: d["status"] for d in deliveries_of(database, ids)}
    assert [statuses[i] for i in order] == ["held"] * 10 + ["pending"] * 15  # oldest first
    # Mid-hold, a claim sends none of the paused destination's deliveries: it parks them.
    claimed = queue.claim_fair(database, 20, LEASE)
    assert {j.destination_id for j in claimed.jobs} == {str(active)}
    assert claimed.parked == 15  # all it met (it reads up to 40 candidates)
    sql(database, "UPDATE deliveries SET status = 'pending' WHERE id = ANY(%s)", (order[15:],))
    # Ten of them pending again (as if the claim had not met them): the hold walks on from
    # where its first chunk stopped and takes them.
    steps = [queue.hold_waiting(database, chunk=10) for _ in range(2)]
    assert [(r.counts, r.more) for r in steps] == [({paused: 10}, True), ({}, False)]
    assert holding(database, paused) == {"holding_since": None, "holding_after": None}
    statuses = {d["id"]: d["status"] for d in deliveries_of(database, ids)}
    assert {statuses[i] for i in order} == {"held"}


def test_a_resume_during_the_hold_ends_it_and_releases_what_it_held(gw, database):
    setup = Setup(gw)
    [dest] = setup.dests
    ids = setup.ingest(25)
    setup.pause(0, hold=False)
    assert queue.hold_waiting(database, chunk=10).counts == {dest: 10}
    setup.resume(0)
    assert queue.hold_waiting(database, chunk=10).counts == {}  # it accepts: nothing more
    assert holding(database, dest)["holding_since"] is None
    assert queue.release_held(database).counts == {dest: 10}
    assert {d["status"] for d in deliveries_of(database, ids)} == {"pending"}
    assert len(queue.claim(database, 30, LEASE)) == 25


def at_once(step, processes: int = 4) -> int:
    """A background step run to the end by `processes` threads at once (each its own
    connection, as delivery processes): how many deliveries they moved in all."""

    def run(_) -> int:
        total, idle = 0, 0
        while idle < 3:  # another one may have a destination locked for a chunk: look again
            moved = step().total
            total += moved
            idle = 0 if moved else idle + 1
        return total

    with ThreadPoolExecutor(processes) as pool:
        return sum(pool.map(run, range(processes)))


def test_processes_holding_at_once_hold_each_delivery_once(gw, database):
    setup = Setup(gw, destinations=2)
    setup.ingest(300)
    setup.pause(0, hold=False)
    setup.pause(1, hold=False)

    assert at_once(lambda: queue.hold_waiting(database, chunk=25)) == 600
    left = sql(database, "SELECT status, count(*) AS n FROM deliveries GROUP BY 1")
    assert {r["status"]: r["n"] for r in left} == {"held": 600}


def due_scan_buffers(database: Database) -> int:
    """Shared buffers a claim of 50 reads in its scan of the due index (EXPLAIN ANALYZE runs
    the claim; rolled back)."""
    nodes, scans = [claim_plan(database.dsn, 50, LEASE)], []
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", []))
        if node.get("Index Name") == "deliveries_due":
            scans.append(node["Shared Hit Blocks"] + node["Shared Read Blocks"])
    assert len(scans) == 1, scans
    return scans[0]


def test_a_vacuum_after_a_large_hold_takes_its_dead_entries_out_of_the_claims_path(gw, database):
    setup = Setup(gw, destinations=2)
    paused, active = setup.dests
    # Left to this test to vacuum: autovacuum would do it too, at a moment of its choosing.
    sql(database, "ALTER TABLE deliveries SET (autovacuum_enabled = false)")
    # 30,000 waiting for the destination about to be paused (the oldest), 100 for the other.
    sql(
        database,
        """
        WITH ev AS (
            INSERT INTO events (account_id, direction, body, status)
            SELECT %(a)s, 'inbound', 'x', 'queued' FROM generate_series(1, 30100)
            RETURNING id
        )
        INSERT INTO deliveries (event_id, destination_id, account_id, max_attempts,
                                next_attempt_at)
        SELECT id, CASE WHEN n <= 30000 THEN %(p)s::uuid ELSE %(q)s::uuid END, %(a)s, 3,
               now() - interval '1 hour' + n * interval '1 ms'
        FROM (SELECT id, row_number() OVER () AS n FROM ev) s
        """,
        {"a": setup.account, "p": paused, "q": active},
    )
    sql(database, "ANALYZE deliveries")
    setup.pause(0)  # the background hold, to its end
    held = sql(database, "SELECT count(*) AS n FROM deliveries WHERE status = 'held'")
    assert held == [{"n": 30000}]
    due_scan_buffers(database)  # the first claim marks the dead entries it meets as dead
    before, count = due_scan_buffers(database), vacuums_of_deliveries(database.dsn)
    queue.vacuum_deliveries(database)
    after = due_scan_buffers(database)
    assert vacuums_of_deliveries(database.dsn) == count + 1
    # Before, every claim read the pages of the dead entries (30,000 of them: ~80 pages)
    # to reach the due ones; after, only the pages of what it claims.
    assert before > 50 and after < 10, (before, after)
    jobs = queue.claim(database, 50, LEASE)
    assert len(jobs) == 50 and {j.destination_id for j in jobs} == {str(active)}


def test_a_hold_vacuums_once_it_has_held_many(monkeypatch):
    monkeypatch.setattr(queue, "HOLD_VACUUM_AFTER", 100)
    assert not queue.vacuum_due(99, more=False)
    assert queue.vacuum_due(100, more=False)  # the pass has ended
    assert not queue.vacuum_due(999, more=True)  # a long pass: not after every chunk
    assert queue.vacuum_due(1000, more=True)


def test_a_destination_paused_again_before_its_release_stays_held(gw, database):
    setup = Setup(gw)
    [dest] = setup.dests
    setup.ingest(3)
    setup.pause(0)
    setup.resume(0)
    setup.pause(0)
    assert queue.release_held(database).counts == {}
    assert releasing_since(database, dest) is None  # the next resume sets it again
    assert {d["status"] for d in sql(database, "SELECT status FROM deliveries")} == {"held"}
    setup.resume(0)
    assert queue.release_held(database).counts == {dest: 3}


def test_processes_releasing_at_once_release_each_delivery_once(gw, database):
    setup = Setup(gw, destinations=2)
    setup.ingest(300)
    setup.pause(0)
    setup.pause(1)
    setup.resume(0)
    setup.resume(1)

    assert at_once(lambda: queue.release_held(database, chunk=25)) == 600
    left = sql(database, "SELECT status, count(*) AS n FROM deliveries GROUP BY 1")
    assert {r["status"]: r["n"] for r in left} == {"pending": 600}


def test_a_held_delivery_after_a_failure_counts_as_retry_scheduled(gw, database):
    setup = Setup(gw)
    [event_id] = setup.ingest(1)
    [job] = queue.claim(database, 10, LEASE)
    setup.pause(0)  # while in flight: the in-flight delivery is not touched
    assert deliveries_of(database, [event_id])[0]["status"] == "in_flight"
    assert queue.finish(database, job, FAIL, 0.0) == "pending"
    # The retry became pending for a paused destination: the claim parks it.
    claimed = queue.claim_fair(database, 10, LEASE)
    assert (claimed.jobs, claimed.parked) == ([], 1)
    [row] = deliveries_of(database, [event_id])
    assert row["status"] == "held"
    ev = event(database, event_id)
    assert ev["status"] == "retry_scheduled" and ev["final_state"] is None


def test_the_claim_parks_a_pending_row_of_a_paused_destination(gw, database):
    setup = Setup(gw, destinations=2)
    ids = setup.ingest(2)
    # A delivery inserted as pending just as its destination was paused: the pause's hold
    # did not see it. Simulated by switching the destination off behind the API's back.
    sql(database, "UPDATE destinations SET active = false WHERE id = %s", (setup.dests[0],))
    claimed = queue.claim_fair(database, 10, LEASE)
    jobs = claimed.jobs
    assert claimed.parked == 2
    assert {j.destination_id for j in jobs} == {str(setup.dests[1])} and len(jobs) == 2
    statuses = {
        d["destination_id"]: d["status"] for d in deliveries_of(database, ids)[:4]
    }  # per destination
    assert statuses[setup.dests[0]] == "held"
    again = queue.claim_fair(database, 10, LEASE)
    assert (again.jobs, again.parked) == ([], 0)  # walked once, not again
    setup.resume(0)
    queue.release_held(database)
    assert {j.destination_id for j in queue.claim(database, 10, LEASE)} == {str(setup.dests[0])}


def test_replay_cancels_held_deliveries_of_the_original(gw, database):
    setup = Setup(gw)
    [event_id] = setup.ingest(1)
    setup.pause(0)
    replay = gw.replay(setup.account, event_id, None)
    [row] = deliveries_of(database, [event_id])
    assert row["status"] == "cancelled"
    assert event(database, event_id)["status"] == "replayed"
    setup.resume(0)
    queue.release_held(database)
    jobs = queue.claim(database, 10, LEASE)
    # Only the replay is delivered.
    assert [j.event_id for j in jobs] == [str(replay["replay_event_id"])]
