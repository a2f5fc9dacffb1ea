#!/usr/bin/env python3
"""Bulk replay and the filtered event list at a million events.

One command; it starts what it needs (an embedded PostgreSQL in a temporary directory, or a
scratch database on --database-url) and stops it. It generates --events events by SQL for
one account (a tenth dead-lettered, with their dead deliveries to a paused destination, so
replays queue held deliveries and nothing is sent: this measures replay, not HTTP), plus as
many for a second account, then measures, each next to a baseline taken in the same run:

  - dry run: Replays.matching(status=dead_letter), against a plain count(*) of the
    account's events (the cheapest count there is);
  - list pages: GET /v1/events' service call with include_total=false, the first page and a
    deep one by cursor, against the same deep page by offset;
  - replay rate: a bulk replay job (Replays.run, batches of 200) for --seconds, against
    single replays (Events.replay, one transaction each, as POST /v1/events/{id}/replay) run
    one after another for the same time: events per second each.

Run it under the shared lock:  flock /tmp/gethookd-bench.lock python bench/replay.py
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

from benchlib import Postgres, code_version, services

POPULATE = """
INSERT INTO events (account_id, direction, source_id, event_type, body, content_type, status,
                    final_state, attempts_count, created_at)
SELECT %(account)s, 'inbound', %(source)s,
       CASE WHEN g %% 10 = 0 THEN 'order.failed' ELSE 'order.created' END,
       convert_to('{"n": ' || g || '}', 'UTF8'), 'application/json',
       CASE WHEN g %% 10 = 0 THEN 'dead_letter' ELSE 'delivered' END,
       CASE WHEN g %% 10 = 0 THEN 'dead_letter' ELSE 'delivered' END, 1,
       now() - interval '30 days' + g * (interval '30 days' / %(n)s)
FROM generate_series(1, %(n)s) AS g;
INSERT INTO deliveries (event_id, destination_id, account_id, status, attempt_count,
                        max_attempts)
SELECT id, %(dest)s, %(account)s,
       CASE WHEN status = 'dead_letter' THEN 'dead' ELSE 'succeeded' END, 1, 1
FROM events WHERE account_id = %(account)s;
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="replay.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="per account (1000000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="each replay case (20)")
    parser.add_argument("--repeat", type=int, default=5, help="timings per query case (5)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="a PostgreSQL server (needs CREATEDB); default: an embedded one",
    )
    return parser.parse_args(argv)


def timed(call, repeat: int) -> tuple[float, object]:
    """Median milliseconds of `repeat` calls (after one untimed), and the last result."""
    result = call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def setup(url: str, n: int):
    """Config, database, and per account (account id, source id, destination id)."""
    from gethookd.db import connect

    config, database, gw = services(url, maxconn=4)
    accounts = []
    for name in ("measured", "neighbour"):
        account = gw.register(name, None, None)["account"]["id"]
        source = gw.create_source(account, name="s")["id"]
        dest = gw.create_destination(account, name="d", url="http://127.0.0.1:9/hook")["id"]
        gw.update_destination(account, dest, {"active": False})  # replays wait, held
        gw.create_route(account, destination_id=dest, source_id=source, max_attempts=3)
        started = time.perf_counter()
        with database.transaction() as cur:
            cur.raw.execute(POPULATE, {"account": account, "source": source, "dest": dest, "n": n})
        print(f"  {n:,} events for {name} in {time.perf_counter() - started:.0f}s", flush=True)
        accounts.append((account, source, dest))
    conn = connect(url, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    conn.close()
    return config, database, accounts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gethookd.services.event_filter import EventFilter
    from gethookd.services.replay import Replays

    print(f"code: {code_version()}")
    tmp = Path(tempfile.mkdtemp(prefix="gethookd-bench-replay-"))
    pg = Postgres(args.database_url, tmp)
    try:
        url = pg.database()
        print(f"generating {args.events:,} events per account (a tenth dead-lettered) ...")
        config, database, accounts = setup(url, args.events)
        account = uuid.UUID(str(accounts[0][0]))
        replays = Replays(config, database)
        dead = EventFilter(status="dead_letter")

        def plain_count() -> int:
            with database.transaction() as cur:
                cur.raw.execute("SELECT count(*) FROM events WHERE account_id = %s", (account,))
                return cur.raw.fetchone()["count"]

        base_ms, everything = timed(plain_count, args.repeat)
        dry_ms, matched = timed(lambda: replays.matching(account, dead), args.repeat)
        print(f"\ndry run (status=dead_letter): {matched:,} of {everything:,} events")
        print(f"  plain count(*) of the account   {base_ms:8.1f} ms  (baseline)")
        print(f"  Replays.matching (the dry run)  {dry_ms:8.1f} ms  {dry_ms / base_ms:.2f}x")

        depth = args.events // 2
        first_ms, first = timed(
            lambda: replays.list_events(account, 25, include_total=False), args.repeat
        )
        offset_ms, by_offset = timed(
            lambda: replays.list_events(account, 25, offset=depth, include_total=False),
            args.repeat,
        )
        with database.transaction() as cur:
            cur.raw.execute(
                "SELECT created_at, id FROM events WHERE account_id = %s"
                " ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
                (account, depth - 1),
            )
            row = cur.raw.fetchone()
        from gethookd.services.event_filter import encode_cursor

        cursor = encode_cursor(row["created_at"], row["id"])
        cursor_ms, by_cursor = timed(
            lambda: replays.list_events(account, 25, cursor=cursor, include_total=False),
            args.repeat,
        )
        assert [e["id"] for e in by_cursor["items"]] == [e["id"] for e in by_offset["items"]]
        total_ms, _ = timed(lambda: replays.list_events(account, 25), args.repeat)
        print(f"\nevent list, 25 a page, include_total=false (page at depth {depth:,}):")
        print(f"  deep page by offset             {offset_ms:8.1f} ms  (baseline)")
        print(
            f"  deep page by cursor             {cursor_ms:8.1f} ms  "
            f"{offset_ms / cursor_ms:.0f}x faster"
        )
        print(f"  first page                      {first_ms:8.1f} ms")
        print(f"  first page with total           {total_ms:8.1f} ms")
        typed_ms, _ = timed(
            lambda: replays.list_events(
                account,
                25,
                event_filter=EventFilter(event_type="order.failed"),
                include_total=False,
            ),
            args.repeat,
        )
        print(f"  first page, event_type filter   {typed_ms:8.1f} ms")
        del first

        # Baseline: single replays one after another (the POST /v1/events/{id}/replay path).
        with database.transaction() as cur:
            cur.raw.execute(
                "SELECT id FROM events WHERE account_id = %s AND status = 'dead_letter'"
                " ORDER BY created_at DESC LIMIT 200000",
                (account,),
            )
            newest = [r["id"] for r in cur.raw.fetchall()]
        single = 0
        until = time.monotonic() + args.seconds
        started = time.monotonic()
        while time.monotonic() < until and single < len(newest):
            replays.replay(account, newest[single], None)
            single += 1
        single_rate = single / (time.monotonic() - started)

        job = replays.create(account, dead, runner="cli")
        done = [0]
        until = time.monotonic() + args.seconds
        started = time.monotonic()
        result = replays.run(
            job["id"],
            progress=lambda n: done.__setitem__(0, done[0] + n),
            stopping=lambda: time.monotonic() >= until,
        )
        bulk_rate = result["replayed"] / (time.monotonic() - started)
        print(f"\nreplay of dead letters ({job['total']:,} matched; {args.seconds:.0f}s each):")
        print(f"  single replays, one by one      {single_rate:8.0f} events/s  (baseline)")
        print(
            f"  bulk replay job (batches of 200){bulk_rate:8.0f} events/s  "
            f"{bulk_rate / single_rate:.2f}x"
        )
        print(f"  a million would take about {1_000_000 / bulk_rate / 60:.0f} min unthrottled")
        # Nothing twice, nothing of the neighbour's.
        with database.transaction() as cur:
            cur.raw.execute(
                "SELECT count(*) AS n, count(DISTINCT replay_of) AS d FROM events"
                " WHERE replay_of IS NOT NULL AND account_id = %s",
                (account,),
            )
            check = cur.raw.fetchone()
            cur.raw.execute(
                "SELECT count(*) FROM events WHERE replay_of IS NOT NULL AND account_id = %s",
                (accounts[1][0],),
            )
            neighbour = cur.raw.fetchone()["count"]
        assert check["n"] == check["d"] == single + result["replayed"], check
        assert neighbour == 0
        print("  checked: one replay per original, none in the other account")
        database.close()
        return 0
    finally:
        pg.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
