#!/usr/bin/env python3
"""Claim latency against the size of the backlog, with and without a paused destination.

One command; it starts what it needs (an embedded PostgreSQL in a temporary directory, or a
scratch database on --database-url) and stops it. For each backlog size (10 thousand and
1 million queued deliveries, populated with generate_series SQL):

  - "active": every destination active; N claims of 50 (queue.claim, as a delivery process
    calls it), timed one by one: median and p95;
  - "paused": the destination holding all but 5,000 of them (and the oldest) is paused
    through the real PATCH path (Gateway.update_destination; timed too), its pending
    deliveries held the way the delivery processes do it in the background, to the end
    (timed, with its longest step), then N claims;
  - "resumed": it is resumed (PATCH, timed), and its held deliveries released the way the
    delivery processes do it in the background, to the end (timed, with its longest step).

Each case has a database of its own, built first; then the claims are timed in --rounds
rounds that take the cases in turn (the order reversed every other round), so that a
change in the machine's load (it may be shared) touches every case alike. After each round
of a case its claimed rows are put back and the tables vacuumed, so every round starts from
the same queue. The figure that matters: the 1M-paused median against the 10k-active
one (target: within 1.5x). The last line sets 1M paused against 10k paused: what the held
rows cost apart from the size of the data (which costs a claim more at a million rows,
paused or not: see bench/RESULTS.md).

To measure another checkout (e.g. the code before a change), put it first on the path:
    PYTHONPATH=/path/to/other/checkout python bench/claim_scale.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import Postgres, code_version

ACTIVE_ROWS = 5000  # rows of the destination that stays active (the newest)
CLAIM = 50
WARMUP = 3  # untimed claims first, in every case

POPULATE = """
CREATE TEMP TABLE g AS SELECT i, {new_id} AS id FROM generate_series(1, %(n)s) i;
INSERT INTO events (id, account_id, direction, body, content_type, status, created_at)
SELECT id, %(account)s, 'inbound', '{"n": 1}'::bytea, 'application/json', 'queued',
       now() - interval '3 hours'
FROM g;
INSERT INTO deliveries (event_id, destination_id, account_id, max_attempts, next_attempt_at,
                        created_at)
SELECT id, CASE WHEN i <= %(held)s THEN %(big)s::uuid ELSE %(small)s::uuid END, %(account)s, 3,
       now() - interval '3 hours' + i * interval '1 ms', now() - interval '3 hours'
FROM g;
DROP TABLE g;
"""

RESET = """
DELETE FROM delivery_attempts;
UPDATE deliveries SET status = 'pending', lease_token = NULL, lease_expires_at = NULL,
       attempt_count = 0
WHERE status = 'in_flight';
UPDATE events SET status = 'queued', attempts_count = 0 WHERE status <> 'queued';
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="claim_scale.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default="10000,1000000",
        help="backlog sizes, comma-separated (default 10000,1000000)",
    )
    parser.add_argument("--claims", type=int, default=40, help="claims timed per case (40)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="a PostgreSQL server (needs CREATEDB); default: an embedded one",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds the claims are split into (5)"
    )
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if args.rounds < 1 or args.claims < args.rounds:
        parser.error("--rounds must be at least 1 and at most --claims")
    if (-(-args.claims // args.rounds) + WARMUP) * CLAIM > ACTIVE_ROWS:
        parser.error(f"--claims at most {ACTIVE_ROWS // CLAIM - WARMUP} a round")
    return args


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deadline = time.monotonic() + args.max_seconds
        self.tmp = Path(tempfile.mkdtemp(prefix="gethookd-claim-"))
        self.pg = Postgres(args.database_url, self.tmp, prefix="gethookd_claim_")
        self.databases: list = []  # gethookd.db.Database pools, closed at stop

    def queue(self, n: int) -> tuple:
        """A new database with a backlog of n: (database, gateway, account, big), where
        `big` is the destination holding all but ACTIVE_ROWS of it (and the oldest)."""
        from gethookd import config as config_mod
        from gethookd.crypto import new_encryption_key
        from gethookd.db import Database
        from gethookd.service import Gateway

        url = self.pg.database()
        database = Database(url, maxconn=2)
        self.databases.append(database)
        env = {
            "DATABASE_URL": url,
            "ENCRYPTION_KEY": new_encryption_key(),
            "GETHOOKD_DATA_DIR": str(self.tmp / "data"),
            # The receiver listens on loopback, which the SSRF guard refuses by default.
            "ALLOWED_DESTINATION_NETWORKS": "127.0.0.0/8",
        }
        gw = Gateway(config_mod.load(None, env), database)
        account = gw.register("bench", None, None)["account"]["id"]
        big = gw.create_destination(account, "big", "http://127.0.0.1:9/big")["id"]
        small = gw.create_destination(account, "small", "http://127.0.0.1:9/small")["id"]
        started = time.monotonic()
        held = max(0, n - ACTIVE_ROWS)
        with database.transaction() as cur:
            # The ids the gateway itself gives events (time-ordered since migration
            # 0011; random in a checkout from before it).
            cur.raw.execute("SELECT to_regproc('gethookd_uuid7') IS NOT NULL AS ordered")
            ordered = cur.raw.fetchone()["ordered"]
            new_id = "gethookd_uuid7()" if ordered else "gen_random_uuid()"
            cur.raw.execute(
                POPULATE.replace("{new_id}", new_id),
                {"n": n, "held": held, "big": big, "small": small, "account": account},
            )
        self.vacuum(database)
        print(f"{n:>9,} queued in {time.monotonic() - started:.1f}s", flush=True)
        return database, gw, account, big

    def cases(self, n: int) -> dict[str, dict]:
        """The two queues of a backlog of n, ready to claim from: "active" as populated,
        "paused" with `big` paused and its deliveries held (both steps timed)."""
        cases = {"active": {"queue": self.queue(n)}}
        database, gw, account, big = paused = self.queue(n)
        started = time.monotonic()
        gw.update_destination(account, big, {"active": False})
        pause_s = time.monotonic() - started
        step, vacuums = self.hold_steps(database)
        hold = self.background(step)
        hold["vacuums"] = vacuums
        first = self.timed_claim(database)  # before the benchmark's own vacuum
        self.reset(database)
        cases["paused"] = {"queue": paused, "pause_s": pause_s, "first_ms": first, "hold": hold}
        return cases

    def rounds(self, figures: dict[int, dict[str, dict]]) -> None:
        """The claims of every case, in rounds taking the cases in turn; each case's
        median and p95 over all its rounds."""
        order = [(n, case) for n, cases in figures.items() for case in cases]
        times: dict[tuple, list[float]] = {key: [] for key in order}
        args = self.args
        for number in range(args.rounds):
            per_round = args.claims // args.rounds + (number < args.claims % args.rounds)
            for n, case in order if number % 2 == 0 else order[::-1]:
                database = figures[n][case]["queue"][0]
                times[(n, case)] += self.claims(database, per_round)
                self.reset(database)
            print(f"round {number + 1}/{args.rounds} of claims done", flush=True)
        for (n, case), got in times.items():
            got.sort()
            figures[n][case].update(
                median_ms=statistics.median(got),
                p95_ms=got[min(len(got) - 1, int(round(0.95 * (len(got) - 1))))],
            )

    def resume(self, gw, database, account, big) -> dict:
        """PATCH active=true, then the delivery processes' background release run to the
        end (queue.release_held, as each process calls it)."""
        from gethookd import queue

        started = time.monotonic()
        gw.update_destination(account, big, {"active": True})
        resume_s = time.monotonic() - started
        return {"resume_s": resume_s, **self.background(lambda: queue.release_held(database))}

    @staticmethod
    def hold_steps(database) -> tuple:
        """The background hold after a pause as the delivery processes run it, a step per
        call, and the seconds of each vacuum of deliveries it ran (queue.Hold; hold_waiting
        alone before it; before migration 0013 the PATCH held everything: no step, None)."""
        from gethookd import queue

        vacuums: list[float] = []
        if not hasattr(queue, "Hold"):
            old = getattr(queue, "hold_waiting", lambda database: None)
            return (lambda: old(database)), vacuums
        hold = queue.Hold()

        def step():
            moved = hold.step(database)
            if hold.vacuumed:
                vacuums.append(hold.vacuumed[1])
            return moved

        return step, vacuums

    @staticmethod
    def background(step) -> dict:
        """A background step (release or hold) run to the end, as each delivery process
        runs it: how long, how many deliveries it moved, in how many statements, and the
        longest one (how long a change to that destination may wait for it)."""
        started = time.monotonic()
        moved, chunks = 0, []
        while True:
            at = time.perf_counter()
            done = step()
            if done is None:
                break
            chunks.append((time.perf_counter() - at) * 1000)
            moved += done.total
            if not done.more:
                break
        return {
            "seconds": time.monotonic() - started,
            "moved": moved,
            "chunks": len(chunks),
            "chunk_max_ms": max(chunks, default=0.0),
        }

    def vacuum(self, database) -> None:
        import psycopg2

        conn = psycopg2.connect(database.dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE deliveries")
            cur.execute("VACUUM ANALYZE events")
            cur.execute("VACUUM ANALYZE delivery_attempts")
        conn.close()

    def reset(self, database) -> None:
        with database.transaction() as cur:
            cur.raw.execute(RESET)
        self.vacuum(database)

    def timed_claim(self, database) -> float:
        from gethookd import queue

        started = time.perf_counter()
        jobs = queue.claim(database, CLAIM, 600)
        took = (time.perf_counter() - started) * 1000
        if len(jobs) != CLAIM:
            raise SystemExit(f"a claim returned {len(jobs)} jobs, expected {CLAIM}")
        return took

    def claims(self, database, count: int) -> list[float]:
        """count claims timed one by one, after WARMUP untimed ones."""
        for _ in range(WARMUP):
            self.timed_claim(database)
        times = []
        for _ in range(count):
            if time.monotonic() > self.deadline:
                raise SystemExit("gave up: --max-seconds reached")
            times.append(self.timed_claim(database))
        return times

    def stop(self) -> None:
        for database in self.databases:
            database.close()
        self.pg.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"code: {code_version()}; {os.cpu_count()} CPUs; {args.claims} claims of {CLAIM} a"
        f" case, in {args.rounds} rounds"
    )
    bench = Bench(args)
    figures: dict[int, dict] = {}
    try:
        bench.pg.start()
        for n in args.sizes:
            figures[n] = bench.cases(n)
        bench.rounds(figures)
        for cases in figures.values():
            database, gw, account, big = cases["paused"]["queue"]
            cases["resumed"] = bench.resume(gw, database, account, big)
    finally:
        bench.stop()
    print()
    print(f"{'queued':>10} {'case':<8} {'median ms':>10} {'p95 ms':>8}  notes")
    for n, cases in figures.items():
        for case, f in cases.items():
            if case == "resumed":
                continue
            note = ""
            if case == "paused":
                h = f["hold"]
                note = (
                    f"{n - ACTIVE_ROWS:,} paused; PATCH active=false took {f['pause_s']:.2f}s, "
                    f"the background hold {h['seconds']:.2f}s ({h['moved']:,} held in "
                    f"{h['chunks']} steps, the longest {h['chunk_max_ms']:.0f} ms; "
                    f"{len(h['vacuums'])} vacuums of deliveries in them, "
                    f"{sum(h['vacuums']):.1f}s); first claim after it {f['first_ms']:.1f} ms"
                )
            print(f"{n:>10,} {case:<8} {f['median_ms']:>10.2f} {f['p95_ms']:>8.2f}  {note}")
    print()
    for n, cases in figures.items():
        r = cases["resumed"]
        print(
            f"{n:>10,} resumed: PATCH active=true took {r['resume_s']:.2f}s; the background "
            f"release made {r['moved']:,} held deliveries pending in {r['seconds']:.2f}s "
            f"({r['chunks']} statements, the longest {r['chunk_max_ms']:.0f} ms)"
        )
    small, large = min(figures), max(figures)
    base = figures[small]["active"]["median_ms"]
    print()
    for case in ("active", "paused"):
        ratio = figures[large][case]["median_ms"] / base
        print(f"{large:,} {case} / {small:,} active (median): {ratio:.2f}x")
    # Paused against paused: what the held rows cost apart from the data's size (a claim
    # costs more in the large queue whatever is paused; see RESULTS.md).
    ratio = figures[large]["paused"]["median_ms"] / figures[small]["paused"]["median_ms"]
    print(f"{large:,} paused / {small:,} paused (median): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
