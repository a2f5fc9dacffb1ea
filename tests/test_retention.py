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


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {s.name for s in config_mod.SETTINGS}}
    env = {**clean, "DATABASE_URL": db_url, "ENCRYPTION_KEY": "11" * 32}
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
