#!/usr/bin/env python3
"""The console's own queries against 100 thousand events: each one's time, and its plan.

One command; it starts what it needs (an embedded PostgreSQL in a temporary directory, or a
scratch database on --database-url) and stops it. Two accounts, each with --events inbound
events over the last 20 hours (all inside the 24-hour window: the worst case), one delivery
per event, one attempt each and three for every tenth (two failures, then success), spread
over --destinations destinations (failures on all of them) and --sources sources; populated
with generate_series SQL, then VACUUM ANALYZE.

Timed through the real service calls (Gateway.destination_stats, .source_stats,
.console_session), --rounds calls each after warm-up, median and p95, next to two baselines
measured in the same run: GET /v1/stats's queries (Gateway.stats, what the console's chart
already calls) and the destination figures without migration 0007's covering index
(dropped at the end). Each query's EXPLAIN (ANALYZE) plan is printed once. Target: every
console query's median under 50 ms.

To measure another checkout, put it first on the path:
    PYTHONPATH=/path/to/other/checkout python bench/console_queries.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchlib import Postgres, code_version

POPULATE = """
INSERT INTO accounts (id, name, email) VALUES (%(account)s, 'bench', %(email)s);
INSERT INTO sources (account_id, name, path_token)
SELECT %(account)s, 'source ' || i, md5(random()::text) FROM generate_series(1, %(sources)s) i;
INSERT INTO destinations (account_id, name, url)
SELECT %(account)s, 'destination ' || i, 'https://example.com/' || i
FROM generate_series(1, %(destinations)s) i;
CREATE TEMP TABLE g AS
SELECT i, gen_random_uuid() AS id, gen_random_uuid() AS delivery_id,
       now() - (i * interval '20 hours' / %(n)s) AS at,
       (SELECT array_agg(id ORDER BY created_at, id) FROM sources
        WHERE account_id = %(account)s) AS sources,
       (SELECT array_agg(id ORDER BY created_at, id) FROM destinations
        WHERE account_id = %(account)s) AS destinations
FROM generate_series(1, %(n)s) i;
INSERT INTO events (id, account_id, direction, source_id, body, content_type, status,
                    attempts_count, received_at, created_at)
SELECT id, %(account)s, 'inbound', sources[1 + i %% cardinality(sources)],
       '{"n": 1}'::bytea, 'application/json', 'delivered', 1, at, at
FROM g;
INSERT INTO deliveries (id, event_id, destination_id, account_id, status, attempt_count,
                        max_attempts, next_attempt_at, created_at, updated_at)
SELECT delivery_id, id, destinations[1 + (i / 10) %% cardinality(destinations)], %(account)s,
       'succeeded', 1, 6, at, at, at
FROM g;
INSERT INTO delivery_attempts (delivery_id, event_id, destination_id, attempt_number,
                               started_at, finished_at, response_status, response_body,
                               error_message, latency_ms, outcome)
SELECT g.delivery_id, g.id, g.destinations[1 + (g.i / 10) %% cardinality(g.destinations)], n,
       g.at + n * interval '1 second', g.at + n * interval '1 second',
       CASE WHEN g.i %% 10 = 0 AND n < 3 THEN 503 ELSE 200 END, 'ok',
       CASE WHEN g.i %% 10 = 0 AND n < 3 THEN 'HTTP 503 from destination' END,
       20 + (g.i * 7 + n) %% 400,
       CASE WHEN g.i %% 10 = 0 AND n < 3 THEN 'http_5xx' ELSE 'success' END
FROM g CROSS JOIN LATERAL generate_series(1, CASE WHEN g.i %% 10 = 0 THEN 3 ELSE 1 END) n;
DROP TABLE g;
"""


def timed(call, rounds: int) -> tuple[float, float]:
    """Median and p95 in milliseconds of `rounds` calls, after three untimed ones."""
    for _ in range(3):
        call()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def explain(url: str, name: str, params: dict) -> str:
    """EXPLAIN ANALYZE of a named query: its plan's node lines and the execution time."""
    import psycopg2

    from gethookd.db import QUERIES

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + QUERIES[name], params)
            lines = [row[0] for row in cur.fetchall()]
        conn.rollback()
    finally:
        conn.close()
    keep = [line for line in lines if "->" in line or "Execution" in line or "Scan" in line]
    return "\n".join("      " + line.strip() for line in keep[:14])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--events", type=int, default=100_000, help="per account (two)")
    parser.add_argument("--destinations", type=int, default=10)
    parser.add_argument("--sources", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--target-ms", type=float, default=50.0)
    args = parser.parse_args()

    import psycopg2

    from gethookd import config as config_mod
    from gethookd.crypto import new_encryption_key
    from gethookd.db import Database
    from gethookd.service import Gateway

    print(f"code: {code_version()}")
    tmp = Path(tempfile.mkdtemp(prefix="gethookd-bench-console-"))
    pg = Postgres(args.database_url, tmp)
    database = None
    try:
        url = pg.database()
        accounts = [uuid.uuid4(), uuid.uuid4()]
        start = time.monotonic()
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            for n, account in enumerate(accounts):
                cur.execute(
                    POPULATE,
                    {
                        "account": str(account),
                        "email": f"bench{n}@example.com",
                        "n": args.events,
                        "sources": args.sources,
                        "destinations": args.destinations,
                    },
                )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
            cur.execute("SELECT count(*) FROM events")
            events = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM delivery_attempts")
            attempts = cur.fetchone()[0]
        print(
            f"populated {events:,} events and {attempts:,} attempts in two accounts "
            f"in {time.monotonic() - start:.1f}s"
        )

        config = config_mod.load(
            None, {"DATABASE_URL": url, "ENCRYPTION_KEY": new_encryption_key()}
        )
        database = Database(url, maxconn=2)
        gw = Gateway(config, database)
        account = accounts[0]
        token, _ = gw.sign_in("127.0.0.1", api_key=gw.create_api_key(account, "bench")["key"])
        assert len(gw.destination_stats(account, 24)) == args.destinations
        assert sum(r["events"] for r in gw.source_stats(account, 24)) == args.events

        cases = [
            ("destination_stats (24h)", lambda: gw.destination_stats(account, 24)),
            ("source_stats (24h)", lambda: gw.source_stats(account, 24)),
            ("console_session (cookie check)", lambda: gw.console_session(token)),
            ("baseline: GET /v1/stats queries", lambda: gw.stats(account)),
        ]
        results = {}
        print(f"\n{'query':36} {'median ms':>10} {'p95 ms':>9}  (rounds: {args.rounds})")
        for name, call in cases:
            results[name] = timed(call, args.rounds)
            print(f"{name:36} {results[name][0]:10.2f} {results[name][1]:9.2f}")

        params = {"account_id": account, "hours": 24}
        print("\nplans (EXPLAIN ANALYZE):")
        for query in ("console_destination_stats", "console_source_stats"):
            print(f"  {query}:\n{explain(url, query, params)}")

        with conn.cursor() as cur:
            cur.execute("DROP INDEX delivery_attempts_destination_started")
            cur.execute("ANALYZE delivery_attempts")
        without = timed(lambda: gw.destination_stats(account, 24), args.rounds)
        print(
            f"\nbaseline: destination_stats without 0007's index: median {without[0]:.2f} ms, "
            f"p95 {without[1]:.2f} ms"
        )
        plan = explain(url, "console_destination_stats", params)
        print(f"  console_destination_stats (no index):\n{plan}")
        conn.close()

        with_index = results["destination_stats (24h)"][0]
        chart = results["baseline: GET /v1/stats queries"][0]
        print("\nsummary")
        print(
            f"  destination_stats: {with_index:.2f} ms; without the index {without[0]:.2f} ms "
            f"(x{without[0] / with_index:.2f} faster with it)"
        )
        for name in (
            "destination_stats (24h)",
            "source_stats (24h)",
            "console_session (cookie check)",
        ):
            median = results[name][0]
            verdict = "ok" if median < args.target_ms else "OVER TARGET"
            print(
                f"  {name}: {median:.2f} ms, x{median / chart:.2f} of GET /v1/stats "
                f"({chart:.2f} ms); target {args.target_ms:.0f} ms: {verdict}"
            )
        return 0
    finally:
        if database is not None:
            database.close()
        pg.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
