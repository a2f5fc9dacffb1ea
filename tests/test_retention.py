"""Retention over thousands of generated rows: expired finished events go with their
deliveries and attempts; unfinished or recent ones stay; one runner at a time; dry run
deletes nothing."""

from __future__ import annotations

import os
import subprocess
import threading

import psycopg2
import pytest

from gethookd import config as config_mod
from gethookd import retention
from gethookd.db import Database
from helpers import gethookd_command, wait_for

SEED = """
WITH ev AS (
    INSERT INTO events (account_id, direction, body, status, created_at, received_at)
    SELECT %(acc)s, 'inbound', '\\x7b7d'::bytea, 'delivered',
           now() - make_interval(days => %(age)s) - g * interval '1 second',
           now() - make_interval(days => %(age)s)
    FROM generate_series(1, %(n)s) g
    RETURNING id
), dl AS (
    INSERT INTO deliveries (event_id, destination_id, account_id, status, max_attempts)
    SELECT id, %(dest)s, %(acc)s, %(status)s, 6 FROM ev WHERE %(status)s IS NOT NULL
    RETURNING id, event_id
)
INSERT INTO delivery_attempts (delivery_id, event_id, destination_id, attempt_number, outcome)
SELECT id, event_id, %(dest)s, 1, 'success' FROM dl
"""


def _one(cur, sql, params=None):
    cur.execute(sql, params)
    return cur.fetchone()[0]


@pytest.fixture
def history(db_url):
    """Account A (default 30 days) and B (60 days) with old, recent and unfinished events."""
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        a = _one(cur, "INSERT INTO accounts (name) VALUES ('a') RETURNING id")
        b = _one(cur, "INSERT INTO accounts (name, retention_days) VALUES ('b', 60) RETURNING id")
        dest = {}
        for acc in (a, b):
            dest[acc] = _one(
                cur,
                "INSERT INTO destinations (account_id, name, url) "
                "VALUES (%s, 'd', 'http://127.0.0.1:9/') RETURNING id",
                (acc,),
            )
        plan = [  # account, age in days, events, delivery status (None: no delivery)
            (a, 40, 3000, "succeeded"),
            (a, 45, 300, "dead"),
            (a, 50, 100, None),
            (a, 40, 150, "pending"),
            (a, 40, 120, "held"),
            (a, 40, 80, "in_flight"),
            (a, 5, 500, "succeeded"),
            (b, 40, 400, "succeeded"),
            (b, 90, 250, "succeeded"),
        ]
        for acc, age, n, status in plan:
            cur.execute(SEED, {"acc": acc, "dest": dest[acc], "age": age, "n": n, "status": status})
    conn.close()
    return {"a": a, "b": b, "expired": 3000 + 300 + 100 + 250, "total": 4900}


def _counts(db_url) -> dict[str, int]:
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        found = {t: _one(cur, f"SELECT count(*) FROM {t}") for t in ("events", "deliveries")}
        found["attempts"] = _one(cur, "SELECT count(*) FROM delivery_attempts")
        found["active"] = _one(
            cur,
            "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'held', 'in_flight')",
        )
        found["old_finished"] = _one(
            cur,
            "SELECT count(*) FROM events e JOIN accounts a ON a.id = e.account_id "
            "WHERE e.created_at < now() - make_interval(days => COALESCE(a.retention_days, 30)) "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id "
            "AND d.status IN ('pending', 'held', 'in_flight'))",
        )
        found["orphans"] = _one(
            cur,
            "SELECT count(*) FROM delivery_attempts t "
            "WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = t.event_id)",
        )
    conn.close()
    return found


def _cli(db_url: str, *args: str, **settings: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {s.name for s in config_mod.SETTINGS}}
    env = {**clean, "DATABASE_URL": db_url, "ENCRYPTION_KEY": "11" * 32, **settings}
    return subprocess.run(
        [*gethookd_command(), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_dry_run_counts_and_deletes_nothing(db_url, history):
    before = _counts(db_url)
    assert before["events"] == history["total"]
    done = _cli(db_url, "purge", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert f"{history['expired']} expired event(s) would be deleted" in done.stdout
    assert _counts(db_url) == before


def test_purge_deletes_expired_finished_events_and_keeps_the_rest(db_url, history):
    before = _counts(db_url)
    done = _cli(db_url, "purge", "--batch-size", "700")
    assert done.returncode == 0, done.stderr
    assert f"{history['expired']} expired event(s) deleted" in done.stdout
    after = _counts(db_url)
    assert after["events"] == history["total"] - history["expired"]
    assert after["old_finished"] == 0 and after["orphans"] == 0
    assert after["active"] == before["active"] == 150 + 120 + 80  # unfinished: all kept
    # Each deleted event took its delivery and attempt with it (the none-delivery ones none).
    assert before["deliveries"] - after["deliveries"] == history["expired"] - 100
    assert before["attempts"] - after["attempts"] == history["expired"] - 100
    # B keeps its 40-day-old events (60-day window); A its 5-day-old ones.
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        kept_b = _one(cur, "SELECT count(*) FROM events WHERE account_id = %s", (history["b"],))
    conn.close()
    assert kept_b == 400
    again = _cli(db_url, "purge")
    assert again.returncode == 0 and "0 expired event(s) deleted" in again.stdout


def test_only_one_runner_purges_at_a_time(db_url, history):
    config = config_mod.load(None, {"DATABASE_URL": db_url, "ENCRYPTION_KEY": "11" * 32})
    started = threading.Event()
    results: dict[str, int | None] = {}

    def first() -> None:
        results["first"] = retention.run_exclusive(
            config, batch=50, pause=0.01, progress=lambda n: started.set()
        )

    runner = threading.Thread(target=first)
    runner.start()
    try:
        wait_for(started.is_set, what="the first runner to delete a batch")
        mid = _counts(db_url)["events"]
        results["second"] = retention.run_exclusive(config, batch=50, pause=0.0)
        assert results["second"] is None  # the lock is taken: it deletes nothing
        assert _counts(db_url)["events"] <= mid
        assert mid > history["total"] - history["expired"]  # the first was not done yet
        busy = _cli(db_url, "purge")
        assert busy.returncode == 1 and "another process is purging" in busy.stderr
    finally:
        runner.join(60)
    assert results["first"] == history["expired"]
    assert _counts(db_url)["events"] == history["total"] - history["expired"]
    # The lock went with the first runner's connection: the next run takes it.
    assert retention.run_exclusive(config) == 0


def test_an_expired_event_whose_delivery_is_pending_again_is_kept(db_url, history):
    """A dead delivery set back to pending (redelivered) keeps its expired event."""
    database = Database(db_url, maxconn=2)
    try:
        conn = psycopg2.connect(db_url)
        with conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE deliveries SET status = 'pending' WHERE id IN (SELECT d.id FROM "
                "deliveries d JOIN events e ON e.id = d.event_id WHERE d.status = 'dead' "
                "LIMIT 10)"
            )
        conn.close()
        deleted = retention.purge(database, 30, batch=1000, pause=0)
    finally:
        database.close()
    assert deleted == history["expired"] - 10
    assert _counts(db_url)["active"] == 150 + 120 + 80 + 10


def test_retention_days_setting_is_the_default_and_an_account_s_own_wins(db_url, history):
    """RETENTION_DAYS=42: A's 40-day-old events stay, its 45- and 50-day-old ones go; B
    keeps its own 60 days (its 40-day-old stay, its 90-day-old go)."""
    expired = 300 + 100 + 250
    dry = _cli(db_url, "purge", "--dry-run", RETENTION_DAYS="42")
    assert dry.returncode == 0, dry.stderr
    assert f"{expired} expired event(s) would be deleted" in dry.stdout
    done = _cli(db_url, "purge", RETENTION_DAYS="42")
    assert done.returncode == 0, done.stderr
    assert f"{expired} expired event(s) deleted" in done.stdout
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT account_id, min(now() - created_at) < interval '42 days', "
            "max(now() - created_at) < interval '42 days', count(*) FROM events "
            "WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id "
            "AND d.status IN ('pending', 'held', 'in_flight')) GROUP BY account_id"
        )
        kept = {row[0]: row[1:] for row in cur.fetchall()}
    conn.close()
    assert kept[history["a"]] == (True, True, 3000 + 500)  # nothing finished over 42 days
    assert kept[history["b"]] == (True, True, 400)  # the 90-day-old ones went


MIXED = """
WITH ev AS (
    INSERT INTO events (account_id, direction, body, status, created_at)
    SELECT %(acc)s, 'inbound', '\\x7b7d'::bytea, 'delivering',
           now() - interval '40 days' - g * interval '1 second'
    FROM generate_series(1, %(n)s) g
    RETURNING id
), done AS (
    INSERT INTO deliveries (event_id, destination_id, account_id, status, attempt_count,
                            max_attempts)
    SELECT id, %(d1)s, %(acc)s, 'succeeded', 1, 6 FROM ev
)
INSERT INTO deliveries (event_id, destination_id, account_id, status, attempt_count,
                        max_attempts, next_attempt_at)
SELECT id, %(d2)s, %(acc)s, %(second)s, 2, 6, now() + interval '1 hour' FROM ev
"""


def test_an_event_is_kept_while_any_of_its_deliveries_waits(db_url):
    """Two deliveries each: one succeeded and the other retrying (pending, attempts left,
    due later), held or in flight keeps the event; succeeded + dead or cancelled does not."""
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        acc = _one(cur, "INSERT INTO accounts (name) VALUES ('m') RETURNING id")
        d1, d2 = (
            _one(
                cur,
                "INSERT INTO destinations (account_id, name, url) "
                "VALUES (%s, %s, 'http://127.0.0.1:9/') RETURNING id",
                (acc, name),
            )
            for name in ("one", "two")
        )
        for second, n in [
            ("pending", 40),
            ("held", 30),
            ("in_flight", 20),
            ("dead", 50),
            ("cancelled", 10),
        ]:
            cur.execute(MIXED, {"acc": acc, "d1": d1, "d2": d2, "second": second, "n": n})
    conn.close()
    done = _cli(db_url, "purge")
    assert done.returncode == 0, done.stderr
    assert "60 expired event(s) deleted" in done.stdout
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT d.status, count(*) FROM deliveries d WHERE d.destination_id = %s GROUP BY 1",
            (d2,),
        )
        left = dict(cur.fetchall())
        siblings = _one(cur, "SELECT count(*) FROM deliveries WHERE destination_id = %s", (d1,))
    conn.close()
    assert left == {"pending": 40, "held": 30, "in_flight": 20}
    assert siblings == 90  # the kept events kept their succeeded deliveries too


def test_replays_and_originals_expire_each_on_its_own(db_url):
    """An expired original replayed twice since (outbound, so both replays carry its
    external id) goes and its replays keep naming it; an expired replay of a recent original
    goes and the original stays. Neither side's deletion fails."""
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        acc = _one(cur, "INSERT INTO accounts (name) VALUES ('r') RETURNING id")

        def event(age_days: int, direction: str, replay_of=None, external=None):
            return _one(
                cur,
                "INSERT INTO events (account_id, direction, body, status, external_event_id, "
                "replay_of, created_at) VALUES (%s, %s, '\\x7b7d', 'delivered', %s, %s, "
                "now() - make_interval(days => %s)) RETURNING id",
                (acc, direction, external, replay_of, age_days),
            )

        old_original = event(40, "outbound", external="order-1")
        new_replays = [event(2, "outbound", old_original, "order-1") for _ in range(2)]
        new_original = event(3, "inbound")
        old_replay = event(35, "inbound", new_original)
    conn.close()
    done = _cli(db_url, "purge")
    assert done.returncode == 0, done.stderr
    assert "2 expired event(s) deleted" in done.stdout
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id, replay_of FROM events WHERE account_id = %s", (acc,))
        left = dict(cur.fetchall())
    conn.close()
    assert old_original not in left and old_replay not in left
    assert left == {new_replays[0]: old_original, new_replays[1]: old_original, new_original: None}


def test_ended_replay_jobs_past_the_window_go_with_their_items(db_url, history):
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    jobs = {}
    with conn.cursor() as cur:
        # (state, ended days ago): only the first two are past account A's 30 days.
        for name, state, ended in [
            ("old_finished", "finished", 40),
            ("old_cancelled", "cancelled", 35),
            ("recent", "finished", 5),
            ("running", "running", None),
        ]:
            jobs[name] = _one(
                cur,
                "INSERT INTO replay_jobs (account_id, filter, runner, state, total, finished_at) "
                "VALUES (%s, '{}', 'background', %s, 1200, "
                "now() - make_interval(days => %s)) RETURNING id",
                (history["a"], state, ended),
            )
            cur.execute(
                "INSERT INTO replay_job_items (job_id, original_event_id) "
                "SELECT %s, gen_random_uuid() FROM generate_series(1, 1200)",
                (jobs[name],),
            )
    done = _cli(db_url, "purge", "--batch-size", "500")  # items go in three batches per job
    assert done.returncode == 0, done.stderr
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM replay_jobs")
        left = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT job_id, count(*) FROM replay_job_items GROUP BY 1")
        items = dict(cur.fetchall())
    conn.close()
    assert left == {jobs["recent"], jobs["running"]}
    assert items == {jobs["recent"]: 1200, jobs["running"]: 1200}
