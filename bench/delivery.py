#!/usr/bin/env python3
"""Delivery throughput of gethookd's delivery processes, against plain `requests`, same run.

One command; it starts everything it needs on this machine (an embedded PostgreSQL or a
scratch database on --database-url, a receiver, the load) and stops it all. Cases:

  (a) receiver answering at once, concurrency 50: one delivery process vs a baseline of
      plain `requests` POSTs of the same body from a gevent pool of 50, no database;
  (b) receiver answering in 50 ms, concurrency 200: the same comparison;
  (c) receiver answering in 50 ms: two delivery processes vs one (each at --scale-concurrency),
      the scaling of a second process on the same database.

The receiver is bench/receiver.py (one epoll loop, keep-alive, TCP_NODELAY) in --receivers
processes sharing one port (SO_REUSEPORT), so that it is not the bottleneck.
For gethookd the events are queued by SQL (generate_series) for a destination pointing at
the receiver before the delivery processes start; the rate is N over the span from the first
attempt's start to the last attempt's record (delivery_attempts), so start-up is not counted.
Every case gets a fresh scratch database. Bounded by --max-seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import Postgres, code_version

HERE = Path(__file__).resolve().parent

BODY = json.dumps(
    {"type": "invoice.paid", "id": "in_1234567890", "amount": 1299, "currency": "eur"}
).encode()

BASELINE = r"""
from gevent import monkey

monkey.patch_all()

import json, sys, time
import gevent.pool, requests

url, count, concurrency, body = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
session = requests.Session()
adapter = requests.adapters.HTTPAdapter(pool_maxsize=concurrency, max_retries=0)
session.mount("http://", adapter)
headers = {"Content-Type": "application/json"}
failures = 0

def post(_):
    global failures
    resp = session.post(url, data=body.encode(), headers=headers, timeout=30)
    resp.content
    if resp.status_code != 200:
        failures += 1

post(0)  # connect once, as the worker's first delivery would
started = time.monotonic()
gevent.pool.Pool(concurrency).map(post, range(count))
print(json.dumps({"seconds": time.monotonic() - started, "failures": failures}))
"""

WORKER = r"""
from gevent import monkey

monkey.patch_all()

import os, sys
from gethookd import config, logs
from gethookd.process import worker

cfg = config.load(None, os.environ)
logs.setup(cfg.LOG_LEVEL, cfg.LOG_FORMAT)
sys.exit(worker.main(cfg, int(sys.argv[1])))
"""

POPULATE = """
CREATE TEMP TABLE g AS SELECT i, gen_random_uuid() AS id FROM generate_series(1, %(n)s) i;
INSERT INTO events (id, account_id, direction, source_id, event_type, body, content_type,
                    status, headers)
SELECT id, %(account)s, 'inbound', %(source)s, 'invoice.paid', %(body)s, 'application/json',
       'queued', '{"content-type": "application/json"}'
FROM g;
INSERT INTO deliveries (event_id, destination_id, account_id, max_attempts, next_attempt_at)
SELECT id, %(destination)s, %(account)s, 3, now() - interval '1 hour' + i * interval '1 us'
FROM g;
DROP TABLE g;
"""

# Anything still to deliver? The first row of each partial index of the queue, if any.
WAITING = """
SELECT EXISTS (SELECT 1 FROM deliveries WHERE status = 'pending' ORDER BY next_attempt_at
               LIMIT 1)
    OR EXISTS (SELECT 1 FROM deliveries WHERE status = 'in_flight' ORDER BY lease_expires_at
               LIMIT 1) AS waiting
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="delivery.py",
        description=__doc__,
        epilog="Only local addresses are used: the receiver listens on 127.0.0.1.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--events", type=int, default=6000, metavar="N", help="events per measurement (6000)"
    )
    parser.add_argument(
        "--cases", default="a,b,c", help="which cases to run, comma-separated (a,b,c)"
    )
    parser.add_argument(
        "--scale-concurrency",
        type=int,
        default=200,
        metavar="C",
        help="WORKER_MAX_CONCURRENCY of each process in case (c) (default 200)",
    )
    parser.add_argument(
        "--scale-events",
        type=int,
        default=20000,
        metavar="N",
        help="events per measurement in case (c) (20000: two processes take a few seconds"
        " over them, so that one starting a moment after the other is a small part of it)",
    )
    parser.add_argument(
        "--receivers", type=int, default=2, help="receiver processes sharing the port (2)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        metavar="URL",
        help="a PostgreSQL server to use (needs CREATEDB); default: an embedded one",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=230, help="give up after this long (230)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the delivery processes' LOG_LEVEL (default info, as shipped)",
    )
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.events < 1 or args.scale_events < 1 or set(args.cases) - {"a", "b", "c"}:
        parser.error("--events and --scale-events must be positive, --cases a subset of a,b,c")
    return args


class Run:
    """Everything started, so that it can all be stopped, whatever happens."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deadline = time.monotonic() + args.max_seconds
        self.tmp = Path(tempfile.mkdtemp(prefix="gethookd-bench-"))
        self.procs: list[subprocess.Popen] = []
        self.pg = Postgres(args.database_url, self.tmp)

    # -- setup ------------------------------------------------------------------------------

    def spawn(self, script: str, *argv: str, env=None, stdout=subprocess.PIPE, **kw):
        # Run from the temporary directory: `python -c` puts the working directory first on
        # the path, and the code measured must be the one this script imported.
        proc = subprocess.Popen(
            [sys.executable, "-c", script, *argv],
            env=env,
            stdout=stdout,
            text=True,
            cwd=self.tmp,
            **kw,
        )
        self.procs.append(proc)
        return proc

    def receiver(self, delay: float) -> tuple[str, list[subprocess.Popen]]:
        """--receivers processes of bench/receiver.py sharing one port."""
        port = "0"
        procs = []
        for _ in range(self.args.receivers):
            proc = subprocess.Popen(
                [sys.executable, str(HERE / "receiver.py"), "--port", port, "--reuse-port"]
                + ["--delay", str(delay)],
                stdout=subprocess.PIPE,
                text=True,
            )
            self.procs.append(proc)
            procs.append(proc)
            port = proc.stdout.readline().strip()
            if not port:
                raise SystemExit("the receiver did not start")
        return f"http://127.0.0.1:{port}/hook", procs

    def stop_procs(self, procs: list[subprocess.Popen]) -> None:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- the measurements -------------------------------------------------------------------

    def baseline(self, url: str, concurrency: int) -> float:
        args = self.args
        proc = self.spawn(BASELINE, url, str(args.events), str(concurrency), BODY.decode())
        out, _ = proc.communicate(timeout=self.remaining())
        result = json.loads(out)
        if result["failures"]:
            raise SystemExit(f"baseline: {result['failures']} requests failed")
        return args.events / result["seconds"]

    def gethookd(
        self, sink_url: str, concurrency: int, processes: int = 1, events: int | None = None
    ) -> float:
        from gethookd import config as config_mod
        from gethookd.crypto import new_encryption_key
        from gethookd.db import Database
        from gethookd.service import Gateway

        args = self.args
        events = events or args.events
        db_url = self.pg.database()
        env = {
            "DATABASE_URL": db_url,
            "ENCRYPTION_KEY": new_encryption_key(),
            "WORKER_MAX_CONCURRENCY": str(concurrency),
            # Raw throughput to one destination: the per-destination cap (fairness between
            # destinations, a quarter of the pool by default) is the whole pool here.
            "DESTINATION_MAX_IN_FLIGHT": str(concurrency),
            "LOG_LEVEL": args.log_level,
            "GETHOOKD_DATA_DIR": str(self.tmp / "data"),
            # The receiver listens on loopback, which the SSRF guard refuses by default.
            "ALLOWED_DESTINATION_NETWORKS": "127.0.0.0/8",
        }
        database = Database(db_url, maxconn=2)
        try:
            gw = Gateway(config_mod.load(None, env), database)
            account = gw.register("bench", None, None)["account"]["id"]
            source = gw.create_source(account, "bench")
            dest = gw.create_destination(account, "sink", sink_url)
            gw.create_route(account, dest["id"], source["id"], max_attempts=3)
            with database.transaction() as cur:
                cur.raw.execute(
                    POPULATE,
                    {
                        "n": events,
                        "account": account,
                        "source": source["id"],
                        "destination": dest["id"],
                        "body": BODY,
                    },
                )
                cur.raw.execute("ANALYZE")
            workers = []
            logs = []
            for index in range(1, processes + 1):
                log_path = self.tmp / f"worker-{len(self.procs)}.log"
                logs.append(log_path)
                with open(log_path, "w") as log:
                    workers.append(
                        self.spawn(
                            WORKER,
                            str(index),
                            env={**os.environ, **env},
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    )
            self.wait_delivered(database, workers, logs)
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=min(30, self.remaining()))
            with database.transaction() as cur:
                cur.raw.execute(
                    "SELECT count(*) AS attempts,"
                    " count(*) FILTER (WHERE outcome = 'success') AS successes,"
                    " EXTRACT(EPOCH FROM max(finished_at) - min(started_at)) AS span"
                    " FROM delivery_attempts"
                )
                stats = dict(cur.raw.fetchone())
        finally:
            database.close()
        self.pg.drop(db_url)
        if stats["successes"] != events or stats["attempts"] != events:
            raise SystemExit(f"expected {events} successful attempts, got {stats}")
        return events / float(stats["span"])

    def wait_delivered(self, database, workers: list, logs: list[Path]) -> None:
        """Until nothing is waiting or in flight. Asked through the queue's own partial
        indexes, every 0.1 s: a count of the delivered rows read the whole table each time,
        PostgreSQL's CPU taken from the processes measured."""
        while True:
            with database.transaction() as cur:
                cur.raw.execute(WAITING)
                if not cur.raw.fetchone()["waiting"]:
                    return
            for worker, log in zip(workers, logs, strict=True):
                if worker.poll() is not None:
                    raise SystemExit(f"a delivery process exited:\n{log.read_text()[-3000:]}")
            if self.remaining() <= 0:
                with database.transaction() as cur:
                    cur.raw.execute("SELECT count(*) FROM deliveries WHERE status = 'succeeded'")
                    done = cur.raw.fetchone()["count"]
                tail = logs[0].read_text()[-2000:]
                raise SystemExit(f"gave up after --max-seconds with {done} delivered:\n{tail}")
            time.sleep(0.1)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    # -- teardown ---------------------------------------------------------------------------

    def stop(self) -> None:
        self.stop_procs([p for p in self.procs if p.poll() is None])
        self.pg.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def compare(run: Run, name: str, delay: float, concurrency: int) -> tuple[float, float]:
    url, receivers = run.receiver(delay)
    try:
        base = run.baseline(url, concurrency)
        got = run.gethookd(url, concurrency)
    finally:
        run.stop_procs(receivers)
    print(
        f"({name}) receiver {delay * 1000:g} ms, concurrency {concurrency}: "
        f"gethookd {got:7.0f} events/s, baseline {base:7.0f} requests/s, "
        f"ratio {got / base:.2f}",
        flush=True,
    )
    return got, base


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"code: {code_version()}; {os.cpu_count()} CPUs; {args.events} events per "
        f"measurement ({args.scale_events} in case c); {args.receivers} receiver processes",
        flush=True,
    )
    run = Run(args)
    try:
        run.pg.start()
        if "a" in args.cases:
            compare(run, "a", 0.0, 50)
        if "b" in args.cases:
            compare(run, "b", 0.05, 200)
        if "c" in args.cases:
            c = args.scale_concurrency
            url, receivers = run.receiver(0.05)
            try:
                one = run.gethookd(url, c, processes=1, events=args.scale_events)
                two = run.gethookd(url, c, processes=2, events=args.scale_events)
            finally:
                run.stop_procs(receivers)
            print(
                f"(c) receiver 50 ms, concurrency {c} per process: 1 process {one:7.0f} "
                f"events/s, 2 processes {two:7.0f} events/s, scaling {two / one:.2f}x",
                flush=True,
            )
    finally:
        run.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
