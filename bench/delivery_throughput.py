#!/usr/bin/env python3
"""End-to-end delivery throughput of one gethookd delivery process, against a baseline.

What it does, all on this machine (127.0.0.1 and a local PostgreSQL only):

  1. starts a local HTTP sink (a gevent WSGI server in its own process) that answers
     200 "ok" to every POST;
  2. baseline: sends N plain `requests` POSTs of the same body to the sink from one
     gevent pool of the same concurrency, in its own process, no database at all;
  3. gethookd: queues N events (through the real ingest code) for a destination
     pointing at the sink, starts one real delivery process (worker.main, gevent
     patched, exactly as `gethookd run` forks it) and waits until all N are delivered;
     throughput is N over the span from the first attempt's start to the last one's
     end, as recorded in delivery_attempts (so process start-up is not counted);
  4. prints both rates and their ratio, then stops everything it started.

The database is a scratch database it creates and drops: on the server named by
--database-url (or DATABASE_URL; needs CREATEDB), or else on an embedded PostgreSQL
it starts in a temporary directory. Sized for a 2-core machine; it stops by itself
(see --max-seconds).
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
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

INGEST_THREADS = 4
BODY = json.dumps(
    {"type": "invoice.paid", "id": "in_1234567890", "amount": 1299, "currency": "eur"}
).encode()

SINK = r"""
from gevent import monkey

monkey.patch_all()

import socket, sys, time
from gevent.pywsgi import WSGIHandler, WSGIServer

delay = float(sys.argv[1])

class Handler(WSGIHandler):
    def handle(self):
        # As any production receiver does: without it, Nagle's algorithm and delayed ACKs
        # add ~40 ms to every answer written in more than one piece.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()

def app(environ, start_response):
    environ["wsgi.input"].read()
    if delay:
        time.sleep(delay)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]

server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None, handler_class=Handler)
server.start()
print(server.server_port, flush=True)
server.serve_forever()
"""

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
sys.exit(worker.main(cfg, 1))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="delivery_throughput.py",
        description=__doc__,
        epilog=(
            "Examples:\n"
            "  python bench/delivery_throughput.py                 # embedded PostgreSQL\n"
            "  python bench/delivery_throughput.py --events 5000 --concurrency 20\n"
            "  DATABASE_URL=postgresql://localhost/postgres python bench/delivery_throughput.py\n"
            "\nOnly local addresses are used: the sink listens on 127.0.0.1."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--events", type=int, default=2000, metavar="N", help="events to deliver (default 2000)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=10,
        metavar="C",
        help="WORKER_MAX_CONCURRENCY, and the baseline's pool size (default 10, as shipped)",
    )
    parser.add_argument(
        "--sink-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long the sink holds each request before answering (default 0)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        metavar="URL",
        help="a PostgreSQL server to use (default: $DATABASE_URL, else an embedded one). "
        "A scratch database is created there and dropped afterwards, so nothing else "
        "in it is touched; this needs the CREATEDB right",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=300,
        metavar="S",
        help="give up if the whole run takes longer than this (default 300)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the delivery process's LOG_LEVEL (default info, as shipped; its log is "
        "written to a file in the temporary directory)",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.concurrency < 1:
        parser.error("--events and --concurrency must be at least 1")
    return args


class Run:
    """Everything started, so that it can all be stopped, whatever happens."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deadline = time.monotonic() + args.max_seconds
        self.tmp = Path(tempfile.mkdtemp(prefix="gethookd-bench-"))
        self.procs: list[subprocess.Popen] = []
        self.embedded = None
        self.admin_url: str | None = None
        self.db_name: str | None = None

    # -- setup ------------------------------------------------------------------------------

    def database(self) -> str:
        import psycopg2

        from gethookd import migrate

        if self.args.database_url:
            self.admin_url = self.args.database_url
        else:
            from gethookd.process.embedded import EmbeddedPostgres

            print("starting an embedded PostgreSQL ...", flush=True)
            self.embedded = EmbeddedPostgres(str(self.tmp / "pg"))
            self.admin_url = self.embedded.start()
        self.db_name = "gethookd_bench_" + uuid.uuid4().hex[:10]
        conn = psycopg2.connect(self.admin_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.db_name}")
        conn.close()
        url = urlunsplit(urlsplit(self.admin_url)._replace(path="/" + self.db_name))
        migrate.apply(url)
        return url

    def spawn(self, script: str, *argv: str, env=None, stdout=subprocess.PIPE, **kw):
        proc = subprocess.Popen(
            [sys.executable, "-c", script, *argv], env=env, stdout=stdout, text=True, **kw
        )
        self.procs.append(proc)
        return proc

    def sink(self) -> str:
        proc = self.spawn(SINK, str(self.args.sink_delay))
        port = proc.stdout.readline().strip()
        if not port:
            raise SystemExit("the sink did not start")
        return f"http://127.0.0.1:{port}/hook"

    # -- the two measurements ---------------------------------------------------------------

    def baseline(self, url: str) -> float:
        args = self.args
        proc = self.spawn(BASELINE, url, str(args.events), str(args.concurrency), BODY.decode())
        out, _ = proc.communicate(timeout=self.remaining())
        result = json.loads(out)
        if result["failures"]:
            raise SystemExit(f"baseline: {result['failures']} requests failed")
        return args.events / result["seconds"]

    def gethookd(self, db_url: str, sink_url: str) -> dict:
        from gethookd import config as config_mod
        from gethookd.crypto import new_encryption_key
        from gethookd.db import Database
        from gethookd.service import Gateway

        args = self.args
        env = {
            "DATABASE_URL": db_url,
            "ENCRYPTION_KEY": new_encryption_key(),
            "WORKER_MAX_CONCURRENCY": str(args.concurrency),
            "LOG_LEVEL": args.log_level,
            "GETHOOKD_DATA_DIR": str(self.tmp / "data"),
        }
        database = Database(db_url, maxconn=INGEST_THREADS)
        try:
            gw = Gateway(config_mod.load(None, env), database)
            account = gw.register("bench", None, None)["account"]["id"]
            source = gw.create_source(account, "bench")
            dest = gw.create_destination(account, "sink", sink_url)
            gw.create_route(account, dest["id"], source["id"], max_attempts=3)
            started = time.monotonic()
            headers = {"Content-Type": "application/json"}
            with ThreadPoolExecutor(INGEST_THREADS) as pool:
                list(
                    pool.map(
                        lambda _: gw.ingest(source["path_token"], BODY, headers),
                        range(args.events),
                    )
                )
            ingest_rate = args.events / (time.monotonic() - started)
            print(f"queued {args.events} events ({ingest_rate:.0f}/s through ingest)", flush=True)

            log_path = self.tmp / "worker.log"
            with open(log_path, "w") as log:
                worker = self.spawn(
                    WORKER,
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                self.wait_delivered(database, worker, log_path)
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=min(30, self.remaining()))
            with database.transaction() as cur:
                cur.raw.execute(
                    "SELECT count(*) AS attempts,"
                    " count(*) FILTER (WHERE outcome = 'success') AS successes,"
                    " EXTRACT(EPOCH FROM max(finished_at) - min(started_at)) AS span,"
                    " avg(latency_ms) AS latency_ms"
                    " FROM delivery_attempts"
                )
                stats = dict(cur.raw.fetchone())
        finally:
            database.close()
        if stats["successes"] != args.events or stats["attempts"] != args.events:
            raise SystemExit(f"expected {args.events} successful attempts, got {stats}")
        return {
            "rate": args.events / float(stats["span"]),
            "latency_ms": float(stats["latency_ms"]),
        }

    def wait_delivered(self, database, worker: subprocess.Popen, log_path: Path) -> None:
        while True:
            with database.transaction() as cur:
                cur.raw.execute("SELECT count(*) AS n FROM deliveries WHERE status = 'succeeded'")
                done = cur.raw.fetchone()["n"]
            if done >= self.args.events:
                return
            if worker.poll() is not None:
                raise SystemExit(f"the delivery process exited:\n{log_path.read_text()[-3000:]}")
            if self.remaining() <= 0:
                raise SystemExit(f"gave up after --max-seconds with {done} delivered")
            time.sleep(0.2)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    # -- teardown ---------------------------------------------------------------------------

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.admin_url and self.db_name:
            try:
                import psycopg2

                conn = psycopg2.connect(self.admin_url)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
                conn.close()
            except Exception as exc:  # the report matters more than the cleanup
                print(f"could not drop {self.db_name}: {exc}", file=sys.stderr)
        if self.embedded is not None:
            self.embedded.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(args)
    try:
        db_url = run.database()
        sink_url = run.sink()
        print(
            f"{args.events} events, concurrency {args.concurrency}, "
            f"sink delay {args.sink_delay * 1000:g} ms, {os.cpu_count()} CPUs",
            flush=True,
        )
        base = run.baseline(sink_url)
        print(f"baseline (plain requests POSTs, gevent pool): {base:8.0f} requests/s", flush=True)
        got = run.gethookd(db_url, sink_url)
        print(
            f"gethookd (one delivery process, end to end): {got['rate']:8.0f} events/s"
            f"  (mean attempt latency {got['latency_ms']:.1f} ms)"
        )
        print(f"ratio gethookd / baseline: {got['rate'] / base:.2f}")
    finally:
        run.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
