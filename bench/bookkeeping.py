#!/usr/bin/env python3
"""CPU a delivery costs apart from its HTTP exchange: the delivery process's and PostgreSQL's.

One command; it starts what it needs (an embedded PostgreSQL in a temporary directory, or a
scratch database on --database-url) and stops it. A queue of --events deliveries is made
with SQL; then, batch by batch (--batch), the delivery process's bookkeeping runs as it does
in `gethookd.process.worker`: the claim, each job's request and signed headers, the hand-over
that frees its slot, the batch's finish and its log lines (built, not written). No request
is sent. Printed per delivery:

  - python: the CPU of the process doing it (time.process_time), PostgreSQL's apart;
  - postgres: the CPU of its PostgreSQL backends (/proc, so the server must be on this
    machine), also in the first and the last quarter of the round: a cost that grows with
    the history (a plan that reads a whole table) makes the last quarter the dearer;
  - wal: the bytes of write-ahead log the round wrote (every row version and index entry
    is logged), which the host does not move at all.

These figures move with the host less than throughput does: a change to the hot path's
bookkeeping shows here when delivery rates are lost in the noise. With --against DIR, another
checkout (e.g. the code before a change) is measured in the same run, rounds alternating
between the two, the order swapped each round; each round runs in its own process, which
imports gethookd from its checkout.

    python bench/bookkeeping.py
    python bench/bookkeeping.py --against /path/to/other/checkout --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bookkeeping.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=20000, help="deliveries per round (20000)")
    parser.add_argument("--batch", type=int, default=100, help="claim and finish size (100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per checkout (3)")
    parser.add_argument(
        "--against", metavar="DIR", help="another checkout of gethookd to measure in turn"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="a PostgreSQL server on this machine (needs CREATEDB); default: an embedded one",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=600, help="give up on a round after this long (600)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(admin_url: str, events: int, batch: int) -> dict:
    """One round, in this process: gethookd is whatever the path finds first."""
    import psycopg2
    from delivery import BODY, POPULATE

    from benchlib import Postgres, code_version, services
    from gethookd import deliver, queue
    from gethookd.process import worker as worker_mod

    pg = Postgres(admin_url, Path(tempfile.mkdtemp(prefix="gethookd-bookkeeping-")))
    url = pg.database()
    db = None
    try:
        config, db, gateway = services(url)
        account = gateway.register("bookkeeping", None, None)["account"]["id"]
        source = gateway.create_source(account, "bookkeeping")
        dest = gateway.create_destination(account, "receiver", "http://127.0.0.1:9/")
        gateway.create_route(account, dest["id"], source["id"], max_attempts=3)
        with db.transaction() as cur:
            params = {
                "n": events,
                "account": account,
                "source": source["id"],
                "destination": dest["id"],
                "body": BODY,
            }
            cur.raw.execute(POPULATE, params)
            cur.raw.execute("ANALYZE")
        worker = worker_mod.DeliveryWorker(config, db)
        ok = deliver.Outcome("success", 200, "ok", None, 50)

        def backends() -> list[int]:
            conn = psycopg2.connect(url)
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()"
                    )
                    return [row[0] for row in cur.fetchall()]
            finally:
                conn.close()

        def cpu_of(pids: list[int]) -> float:
            ticks = 0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                ticks += int(fields[11]) + int(fields[12])
            return ticks / os.sysconf("SC_CLK_TCK")

        def wal_position() -> int:
            conn = psycopg2.connect(url)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
                    return int(cur.fetchone()[0])
            finally:
                conn.close()

        def one_batch() -> int:
            jobs = queue.claim(db, batch, 60, busy=dict(worker.busy))
            for job in jobs:
                worker.in_flight[job.delivery_id] = job
                worker.busy[job.destination_id] += 1
            for job in jobs:
                deliver.build_headers(worker._request(job))
            done = [queue.Finished(job, ok, None) for job in jobs]
            for finished in done:
                worker._done_sending(finished.job)
            recorded = queue.finish_batch(db, done)
            for finished, status in zip(done, recorded.statuses, strict=True):
                worker_mod._transition(finished.job, finished.result, status, None)
            return len(jobs)

        one_batch()  # connections opened, statements prepared: not what this measures
        pids = backends()
        python = postgres = 0.0
        delivered = 0
        batches: list[tuple[int, float]] = []  # per batch: deliveries, PostgreSQL's CPU
        wal = wal_position()
        while True:
            py0, pg0 = time.process_time(), cpu_of(pids)
            n = one_batch()
            python += time.process_time() - py0
            spent = cpu_of(pids) - pg0
            postgres += spent
            if not n:
                break
            delivered += n
            batches.append((n, spent))

        def quarter_us(part: list[tuple[int, float]]) -> float:
            return sum(s for _, s in part) / max(1, sum(n for n, _ in part)) * 1e6

        # A cost that grows as the history does (a plan reading a whole table) shows as a
        # last quarter dearer than the first.
        q = max(1, len(batches) // 4)
        return {
            "code": code_version(),
            "deliveries": delivered,
            "python_us": python / delivered * 1e6,
            "postgres_us": postgres / delivered * 1e6,
            "postgres_first_quarter_us": quarter_us(batches[:q]),
            "postgres_last_quarter_us": quarter_us(batches[-q:]),
            "wal_bytes": (wal_position() - wal) / delivered,
        }
    finally:
        if db is not None:
            db.close()
        pg.close()


def run_round(checkout: Path, admin_url: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(checkout), str(HERE)]))
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "--database-url",
            admin_url,
            "--events",
            str(args.events),
            "--batch",
            str(args.batch),
        ],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=args.max_seconds,
    )
    if proc.returncode != 0:
        raise SystemExit(f"a round in {checkout} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.database_url, args.events, args.batch)))
        return 0
    sys.path.insert(0, str(ROOT))
    from benchlib import Postgres

    checkouts = [ROOT] + ([Path(args.against).resolve()] if args.against else [])
    pg = Postgres(args.database_url, Path(tempfile.mkdtemp(prefix="gethookd-bookkeeping-")))
    results: dict[Path, list[dict]] = {c: [] for c in checkouts}
    try:
        admin_url = pg.start()
        print(
            f"{args.events} deliveries a round, batches of {args.batch}, {os.cpu_count()} CPUs",
            flush=True,
        )
        for index in range(args.rounds):
            order = checkouts if index % 2 == 0 else checkouts[::-1]
            for checkout in order:
                got = run_round(checkout, admin_url, args)
                results[checkout].append(got)
                print(
                    f"round {index + 1}: {got['code']}: python {got['python_us']:.0f} us, "
                    f"postgres {got['postgres_us']:.0f} us a delivery (its first quarter "
                    f"{got['postgres_first_quarter_us']:.0f}, "
                    f"last {got['postgres_last_quarter_us']:.0f}), "
                    f"wal {got['wal_bytes']:.0f} bytes",
                    flush=True,
                )
    finally:
        pg.close()
    medians = {}
    for checkout, rows in results.items():
        medians[checkout] = (
            statistics.median(r["python_us"] for r in rows),
            statistics.median(r["postgres_us"] for r in rows),
        )
        py, pgcpu = medians[checkout]
        wal = statistics.median(r["wal_bytes"] for r in rows)
        print(
            f"median {rows[0]['code']}: python {py:.0f} us, postgres {pgcpu:.0f} us, "
            f"wal {wal:.0f} bytes a delivery"
        )
    if args.against:
        (py, pgcpu), (py_other, pg_other) = medians[ROOT], medians[checkouts[1]]
        print(
            f"this checkout against the other: python {py / py_other:.2f}x, "
            f"postgres {pgcpu / pg_other:.2f}x, both {(py + pgcpu) / (py_other + pg_other):.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
