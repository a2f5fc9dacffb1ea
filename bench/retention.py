#!/usr/bin/env python3
"""Does the retention purge slow live ingest? p99 ingest latency with and without it.

One command: starts PostgreSQL (embedded unless --database-url/DATABASE_URL), a real
`gethookd run --role api`, an account with a source routed to a destination, then writes a
history of N finished events older than the retention window (each with a succeeded
delivery and its attempt, plus a few old events whose delivery is still held: the purge must
keep them) by generate_series SQL. Then it offers a steady open-loop load
(bench/loadgen.py at --rate, well under capacity) in windows of --seconds:

  baseline   windows without the purge (before it);
  purge      windows while the purge (gethookd.retention.run_exclusive, the code the
             delivery processes and `gethookd purge` run) deletes the history;
  after      one window once it is done.

Prints each window's p50/p99, the ratio of the purge windows' p99 (median and worst) to the
baseline's (target <= 2x), the purge's duration and rows/s, and checks that exactly the
expired finished events went. Bounded: the purge is stopped after --max-purge-seconds.

    python bench/retention.py                      # 1,000,000 events, 200/s, 20 s windows
    python bench/retention.py --events 200000 --batch-size 1000 --pause 0.02
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg2

from benchlib import Postgres, code_version, start_api

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from helpers import Api, free_port  # noqa: E402

CHUNK = 100_000
HISTORY = """
WITH ev AS (
    INSERT INTO events (account_id, direction, source_id, event_type, body, content_type,
                        status, attempts_count, created_at, received_at)
    SELECT %(acc)s, 'inbound', %(src)s, 'bench.old',
           convert_to('{"type":"bench.old","n":' || g || ',"pad":"' || repeat('x', 120)
                      || '"}', 'UTF8'),
           'application/json', 'delivered', 1,
           now() - make_interval(days => %(age)s) - g * interval '1 second',
           now() - make_interval(days => %(age)s) - g * interval '1 second'
    FROM generate_series(%(lo)s, %(hi)s) g
    RETURNING id, created_at
), dl AS (
    INSERT INTO deliveries (event_id, destination_id, account_id, status, attempt_count,
                            max_attempts, next_attempt_at, created_at, updated_at)
    SELECT id, %(dest)s, %(acc)s, %(status)s, 1, 5, created_at, created_at, created_at
    FROM ev
    RETURNING id, event_id, created_at
)
INSERT INTO delivery_attempts (delivery_id, event_id, destination_id, attempt_number,
                               started_at, finished_at, response_status, latency_ms, outcome)
SELECT id, event_id, %(dest)s, 1, created_at, created_at, 200, 12, 'success' FROM dl
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="retention.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="expired events (1M)")
    parser.add_argument("--held", type=int, default=10_000, help="old events still held (10k)")
    parser.add_argument("--rate", type=float, default=200, help="offered webhooks/s (200)")
    parser.add_argument("--seconds", type=float, default=20, help="seconds per window (20)")
    parser.add_argument("--baseline-windows", type=int, default=2, help="windows before (2)")
    parser.add_argument("--batch-size", type=int, default=None, help="RETENTION_BATCH_SIZE (500)")
    parser.add_argument("--pause", type=float, default=None, help="RETENTION_PAUSE in s (0.05)")
    parser.add_argument(
        "--max-purge-seconds", type=float, default=900, help="stop the purge after this (900)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="a PostgreSQL server (default: $DATABASE_URL, else an embedded one)",
    )
    return parser.parse_args(argv)


class Run:
    """Everything started, so that all of it is stopped whatever happens."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="gethookd-retention-"))
        self.pg = Postgres(args.database_url, self.tmp, prefix="gethookd_retention_")
        self.proc: subprocess.Popen | None = None
        self.key = ""

    def gateway(self, db_url: str) -> str:
        from gethookd.crypto import new_encryption_key

        self.key = new_encryption_key()
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "ENCRYPTION_KEY": self.key,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "BASE_URL": f"http://127.0.0.1:{port}",
            "GETHOOKD_DATA_DIR": str(self.tmp / "data"),
            "LOG_LEVEL": "warning",
            "ALLOWED_DESTINATION_NETWORKS": "127.0.0.0/8",
        }
        self.proc = start_api(env, self.tmp / "gethookd.log")
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.pg.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def history(db_url: str, ids: dict, events: int, held: int) -> None:
    """events expired finished ones (40+ days old) and held old ones, by SQL, in chunks."""
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    started = time.monotonic()
    try:
        with conn.cursor() as cur:
            plan = [(1, events, "succeeded", 40), (events + 1, events + held, "held", 45)]
            for lo, hi, status, age in plan:
                for start in range(lo, hi + 1, CHUNK):
                    params = {**ids, "lo": start, "hi": min(hi, start + CHUNK - 1)}
                    cur.execute(HISTORY, {**params, "status": status, "age": age})
                    print(f"  history: {params['hi']:,} events", end="\r", flush=True)
            cur.execute("VACUUM ANALYZE events, deliveries, delivery_attempts")
    finally:
        conn.close()
    print(
        f"  history: {events:,} expired + {held:,} held events with deliveries and attempts "
        f"in {time.monotonic() - started:.0f} s",
        flush=True,
    )


def window(url: str, rate: float, seconds: float) -> dict:
    """One open-loop load window; loadgen's JSON result."""
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "loadgen.py"),
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--event-type",
            "bench.live",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    if done.returncode != 0:
        raise SystemExit(f"the sender failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ok = sum(n for status, n in result["statuses"].items() if status.startswith("2"))
    result["accepted"] = ok
    return result


def show(label: str, result: dict) -> None:
    lat = result["ingest_latency_ms"]
    print(
        f"  {label:<10} p50 {lat['p50']:7.2f} ms  p99 {lat['p99']:7.2f} ms  "
        f"max {lat['max']:7.2f} ms  accepted {result['accepted']}/{result['sent']}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from gethookd import config as config_mod
    from gethookd import retention

    run = Run(args)
    try:
        db_url = run.pg.database()
        base = run.gateway(db_url)
        api = Api(base).register(f"bench-{uuid.uuid4().hex[:8]}@example.com")
        made = api.pipeline("http://127.0.0.1:9")
        ingest = made["source"]["ingest_url"]
        conn = psycopg2.connect(db_url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT account_id FROM sources WHERE id = %s", (made["source"]["id"],))
            account = cur.fetchone()[0]
        conn.close()
        ids = {"acc": account, "src": made["source"]["id"], "dest": made["destination"]["id"]}
        print(
            f"gethookd: {code_version()}; {os.cpu_count()} CPUs; {args.rate:g}/s offered, "
            f"{args.seconds:g} s windows",
            flush=True,
        )
        history(db_url, ids, args.events, args.held)

        env = {"DATABASE_URL": db_url, "ENCRYPTION_KEY": run.key}
        config = config_mod.load(None, env)
        batch = args.batch_size or config.RETENTION_BATCH_SIZE
        pause = config.RETENTION_PAUSE if args.pause is None else args.pause
        print(f"purge: batch {batch}, pause {pause:g} s", flush=True)

        window(ingest, args.rate, 3)  # warm-up: connections, caches
        baseline = []
        for i in range(args.baseline_windows):
            baseline.append(window(ingest, args.rate, args.seconds))
            show(f"baseline{i + 1}", baseline[-1])

        deleted = [0]
        outcome: dict = {}
        deadline = time.monotonic() + args.max_purge_seconds

        def purge() -> None:
            started = time.monotonic()
            try:
                outcome["deleted"] = retention.run_exclusive(
                    config,
                    batch=batch,
                    pause=pause,
                    progress=lambda n: deleted.__setitem__(0, deleted[0] + n),
                    stopping=lambda: time.monotonic() > deadline,
                )
            except Exception as exc:  # reported below
                outcome["error"] = repr(exc)
            outcome["seconds"] = time.monotonic() - started

        purger = threading.Thread(target=purge)
        purger.start()
        during = []
        while purger.is_alive():
            during.append(window(ingest, args.rate, args.seconds))
            show(f"purge{len(during)}", during[-1])
            print(f"             purged so far: {deleted[0]:,}", flush=True)
        purger.join()
        after = window(ingest, args.rate, args.seconds)
        show("after", after)

        conn = psycopg2.connect(db_url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT event_type, count(*) FROM events GROUP BY 1")
            left = dict(cur.fetchall())
        conn.close()
        accepted = sum(r["accepted"] for r in [*baseline, *during, after]) + args.rate * 3
    finally:
        run.stop()

    if "error" in outcome:
        print(f"the purge FAILED: {outcome['error']}")
        return 1
    # The baseline: every window without the purge (before it and after it), median, so one
    # window disturbed by something else on the machine does not decide the ratio.
    quiet = [*baseline, after]
    base_p99 = statistics.median(r["ingest_latency_ms"]["p99"] for r in quiet)
    base_p50 = statistics.median(r["ingest_latency_ms"]["p50"] for r in quiet)
    # The last purge window may be mostly after the purge: judged only if it is the only one.
    judged = during[:-1] if len(during) > 1 else during
    p99s = [r["ingest_latency_ms"]["p99"] for r in judged]
    p50s = [r["ingest_latency_ms"]["p50"] for r in judged]
    rows = outcome["deleted"] or 0
    secs = outcome["seconds"]
    print()
    print(
        f"ingest at {args.rate:g}/s: without the purge ({len(quiet)} windows, median) "
        f"p50 {base_p50:.2f} ms p99 {base_p99:.2f} ms; "
        f"during the purge ({len(judged)} windows) p50 {statistics.median(p50s):.2f} ms, "
        f"p99 median {statistics.median(p99s):.2f} ms, worst {max(p99s):.2f} ms"
    )
    ratio = statistics.median(p99s) / base_p99
    worst = max(p99s) / base_p99
    print(
        f"p99 ratio purge/baseline: median {ratio:.2f}x, worst window {worst:.2f}x "
        f"(target <= 2x): {'OK' if worst <= 2 else ('median OK' if ratio <= 2 else 'MISSED')}"
    )
    print(
        f"purge: {rows:,} events (and as many deliveries and attempts) in {secs:.1f} s = "
        f"{rows / secs:,.0f} events/s, {3 * rows / secs:,.0f} rows/s"
        + ("" if rows >= args.events else "  (STOPPED at --max-purge-seconds)")
    )
    kept_ok = left.get("bench.old", 0) == args.held and rows == args.events
    print(
        f"left: {left.get('bench.old', 0):,} old events (the {args.held:,} held kept: "
        f"{'yes' if kept_ok else 'NO'}), {left.get('bench.live', 0):,} live ones "
        f"(~{accepted:,.0f} accepted)"
    )
    return 0 if kept_ok else 1


if __name__ == "__main__":
    sys.exit(main())
