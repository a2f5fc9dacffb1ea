"""Retention at volume: 100,000 expired events with their deliveries and attempts, among
events it must keep, purged by `gethookd purge` in the test suite's time budget. At this
size a per-row table scan (a foreign key without an index) or a batch that rereads the
events it keeps would take minutes, not seconds."""

from __future__ import annotations

import os
import subprocess

import psycopg2

from gethookd import config as config_mod
from helpers import gethookd_command

EXPIRED = 100_000
SEED = """
WITH ev AS (
    INSERT INTO events (account_id, direction, body, status, created_at, received_at)
    SELECT %(acc)s, 'inbound', convert_to('{"n":' || g || '}', 'UTF8'), 'delivered',
           now() - make_interval(days => %(age)s) - g * interval '1 second',
           now() - make_interval(days => %(age)s) - g * interval '1 second'
    FROM generate_series(1, %(n)s) g
    RETURNING id
), dl AS (
    INSERT INTO deliveries (event_id, destination_id, account_id, status, attempt_count,
                            max_attempts)
    SELECT id, %(dest)s, %(acc)s, %(status)s, 2, 6 FROM ev
    RETURNING id, event_id
)
INSERT INTO delivery_attempts (delivery_id, event_id, destination_id, attempt_number, outcome)
SELECT id, event_id, %(dest)s, n, CASE WHEN n = 1 THEN 'http_5xx' ELSE 'success' END
FROM dl, generate_series(1, 2) n
"""


def _counts(cur) -> dict[str, int]:
    found = {}
    for table in ("events", "deliveries", "delivery_attempts"):
        cur.execute(f"SELECT count(*) FROM {table}")
        found[table] = cur.fetchone()[0]
    cur.execute(
        "SELECT count(*) FROM events WHERE created_at < now() - interval '30 days' "
        "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id "
        "AND d.status IN ('pending', 'held', 'in_flight'))"
    )
    found["expired"] = cur.fetchone()[0]
    return found


def _purge(db_url: str, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {s.name for s in config_mod.SETTINGS}}
    env = {**clean, "DATABASE_URL": db_url, "ENCRYPTION_KEY": "11" * 32}
    return subprocess.run(
        [*gethookd_command(), "purge", *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_purge_of_100k_events_is_exact(db_url):
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("INSERT INTO accounts (name) VALUES ('volume') RETURNING id")
        acc = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO destinations (account_id, name, url) "
            "VALUES (%s, 'd', 'http://127.0.0.1:9/') RETURNING id",
            (acc,),
        )
        dest = cur.fetchone()[0]
        plan = [  # age in days, events, delivery status
            (45, 3_000, "held"),  # older than the expired ones: read first, kept
            (40, EXPIRED // 2, "succeeded"),
            (40, 2_000, "pending"),  # retrying
            (35, EXPIRED // 2, "dead"),
            (5, 5_000, "succeeded"),  # recent
        ]
        for age, n, status in plan:
            cur.execute(SEED, {"acc": acc, "dest": dest, "age": age, "n": n, "status": status})
        cur.execute("ANALYZE events, deliveries, delivery_attempts")
        before = _counts(cur)
        assert before["expired"] == EXPIRED

        dry = _purge(db_url, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"{EXPIRED} expired event(s) would be deleted" in dry.stdout
        assert _counts(cur) == before

        # _purge's timeout bounds it; speed itself is measured in bench/retention.py.
        done = _purge(db_url, "--batch-size", "1000")
        assert done.returncode == 0, done.stderr
        assert f"{EXPIRED} expired event(s) deleted" in done.stdout
        after = _counts(cur)
        kept = 3_000 + 2_000 + 5_000
        assert after == {
            "events": kept,
            "deliveries": kept,
            "delivery_attempts": 2 * kept,
            "expired": 0,
        }
        cur.execute("SELECT status, count(*) FROM deliveries GROUP BY 1")
        assert dict(cur.fetchall()) == {"held": 3_000, "pending": 2_000, "succeeded": 5_000}
    conn.close()
