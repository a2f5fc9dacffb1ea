"""Sustained load through the whole gateway: ingest -> queue -> delivery -> receiver.

Starts everything it needs (PostgreSQL, `gethookd run`, a receiver, an open-loop sender),
offers a fixed rate of webhooks for a while, then waits for every accepted one to arrive,
and prints per rate: accepted/s, delivered/s, ingest-to-delivery latency (p50/p99, from
the moment the sender sent it to the moment the receiver got it), lost and duplicated.

    python bench/end_to_end.py                       # 200/s and 1,000/s, one instance
    python bench/end_to_end.py --rates 1000 --instances 2
    DATABASE_URL=postgresql://me@localhost/postgres python bench/end_to_end.py

With --instances 2, two gethookd instances (separate ports and data directories, one
DATABASE_URL) share the work: the sender alternates between their ingest URLs, and the
receiver counts every event once (duplicates are reported).

Baselines, each rate offered again right after, same sender, same server, same run (off
with --no-baselines): the naive ingest app of bench/ingest.py (one INSERT + COMMIT a
request, 2 gthread workers x 4 threads; nothing routed, queued or delivered), whose answer
is a part of gethookd's path done the simplest way; and the sender to the receiver alone,
no gateway: the floor the machine and the benchmark's own processes set.
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
from pathlib import Path
from urllib.parse import urlsplit

import hoststall
import requests

from benchlib import NAIVE_TABLE, Postgres, code_version, free_port, naive_command, wait_http

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="end_to_end.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rates", default="200,1000", help="offered webhooks/s, comma-separated (200,1000)"
    )
    parser.add_argument("--seconds", type=float, default=20, help="seconds per rate (20)")
    parser.add_argument("--instances", type=int, default=1, help="gethookd instances (1)")
    parser.add_argument("--concurrency", type=int, default=50, help="WORKER_MAX_CONCURRENCY (50)")
    parser.add_argument(
        "--receiver-delay", type=float, default=0.0, help="seconds the receiver takes (0)"
    )
    parser.add_argument("--log-level", default="info", help="gethookd LOG_LEVEL (info)")
    parser.add_argument(
        "--host-probe",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="first time the host's CPU for slow-downs, with the gateway idle (5; 0: skip); "
        "see hoststall.py",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="a PostgreSQL server (default: $DATABASE_URL, else an embedded one); a scratch "
        "database is created there and dropped afterwards",
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=60, help="wait this long for stragglers (60)"
    )
    parser.add_argument(
        "--baselines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="offer each rate again to the naive ingest app and to the receiver alone (on)",
    )
    parser.add_argument(
        "--trace-dir",
        metavar="DIR",
        help="write each ingest answer's time and latency to DIR/ingest-<rate>.txt (to line "
        "slow answers up with other logs)",
    )
    args = parser.parse_args(argv)
    args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.trace_dir:
        Path(args.trace_dir).mkdir(parents=True, exist_ok=True)
    if not args.rate_list or min(args.rate_list) <= 0 or args.instances < 1:
        parser.error("--rates must be positive numbers and --instances at least 1")
    return args


def gethookd_command() -> list[str]:
    exe = Path(sys.executable).parent / "gethookd"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gethookd.cli"]


class Run:
    """Everything started, so that all of it is stopped whatever happens."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="gethookd-e2e-"))
        self.procs: list[subprocess.Popen] = []
        self.pg = Postgres(args.database_url, self.tmp, prefix="gethookd_e2e_")

    def receiver(self) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "receiver.py"), "--delay", str(self.args.receiver_delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        port = proc.stdout.readline().strip()
        if not port:
            raise SystemExit("the receiver did not start")
        return f"http://127.0.0.1:{port}"

    def naive(self, db_url: str) -> str:
        """The naive ingest app on its own table in db_url; its ingest URL."""
        import psycopg2

        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute(NAIVE_TABLE)
        conn.close()
        port = free_port()
        log = self.tmp / "naive.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                naive_command(port),
                env={**os.environ, "NAIVE_DATABASE_URL": db_url},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/", proc, log)
        return f"http://127.0.0.1:{port}/ingest/baseline"

    def gateways(self, db_url: str) -> list[str]:
        from gethookd.crypto import new_encryption_key

        key = new_encryption_key()
        urls = []
        for i in range(self.args.instances):
            port = free_port()
            env = {
                **os.environ,
                "DATABASE_URL": db_url,
                "ENCRYPTION_KEY": key,
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "BASE_URL": f"http://127.0.0.1:{port}",
                "GETHOOKD_DATA_DIR": str(self.tmp / f"data-{i}"),
                "WORKER_MAX_CONCURRENCY": str(self.args.concurrency),
                # Raw throughput to one destination: the per-destination cap (fairness
                # between destinations, a quarter of the pool by default) is the whole pool.
                "DESTINATION_MAX_IN_FLIGHT": str(self.args.concurrency),
                "LOG_LEVEL": self.args.log_level,
                # The receiver is on loopback; a production deployment would not allow it.
                "ALLOWED_DESTINATION_NETWORKS": "127.0.0.0/8",
            }
            log = open(self.tmp / f"gethookd-{i}.log", "wb")  # noqa: SIM115 - closed at exit
            proc = subprocess.Popen(
                [*gethookd_command(), "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.procs.append(proc)
            urls.append(f"http://127.0.0.1:{port}")
        for i, url in enumerate(urls):
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    log = (self.tmp / f"gethookd-{i}.log").read_text()[-3000:]
                    raise SystemExit(f"gethookd {i} did not become ready:\n{log}")
                time.sleep(0.2)
        return urls

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    proc.kill()
                proc.wait()
        self.pg.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def setup_pipeline(api: str, receiver: str) -> str:
    """An account, a source, a destination on the receiver, a route; the ingest path."""

    def call(method: str, path: str, body: dict, key: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        resp = requests.request(method, api + path, json=body, headers=headers, timeout=10)
        if resp.status_code >= 300:
            raise SystemExit(f"{method} {path}: {resp.status_code} {resp.text}")
        return resp.json()["data"]

    boot = call(
        "POST",
        "/v1/auth/register",
        {
            "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
            "password": "bench pass",
            "name": "b",
        },
    )
    key = boot["api_key"]["key"]
    source = call("POST", "/v1/sources", {"name": "bench"}, key)
    dest = call("POST", "/v1/destinations", {"name": "receiver", "url": receiver + "/hook"}, key)
    call(
        "POST",
        "/v1/routes",
        {
            "source_id": source["id"],
            "destination_id": dest["id"],
            "retry_policy": {"max_attempts": 5},
        },
        key,
    )
    return urlsplit(source["ingest_url"]).path


def offer(rate: float, seconds: float, urls: list[str], trace: Path | None = None) -> dict:
    """bench/loadgen.py's summary of `rate` requests a second to urls for `seconds`."""
    load = subprocess.run(
        [
            sys.executable,
            str(HERE / "loadgen.py"),
            *("--rate", str(rate), "--seconds", str(seconds)),
            *(["--trace", str(trace)] if trace else []),
            *urls,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    if load.returncode != 0:
        raise SystemExit(f"the sender failed: {load.stderr[-2000:]}")
    return json.loads(load.stdout.strip().splitlines()[-1])


def one_rate(args, rate: float, ingest_urls: list[str], receiver: str) -> dict:
    requests.post(receiver + "/reset", timeout=5)
    trace = Path(args.trace_dir) / f"ingest-{rate:g}.txt" if args.trace_dir else None
    sent = offer(rate, args.seconds, ingest_urls, trace)
    accepted = sum(n for status, n in sent["statuses"].items() if status.startswith("2"))
    deadline = time.monotonic() + args.drain_seconds
    while True:
        stats = requests.get(receiver + "/stats", timeout=5).json()
        if stats["distinct"] >= accepted or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    span = (stats["last"] - stats["first"]) if stats["first"] else 0.0
    return {
        "offered": rate,
        "sent": sent,
        "accepted": accepted,
        "delivered": stats["distinct"],
        "duplicates": stats["duplicates"],
        "lost": accepted - stats["distinct"],
        "accepted_per_s": accepted / sent["seconds"],
        "delivered_per_s": stats["distinct"] / span if span else 0.0,
        "latency_ms": stats["latency_ms"],
    }


def baselines(rate: float, seconds: float, naive: str, receiver: str) -> str:
    """The same rate, right after, to the naive ingest app and to the receiver alone."""
    parts = []
    for name, url in (
        ("naive ingest answer (one INSERT + COMMIT a request, nothing delivered)", naive),
        ("the sender to the receiver alone", receiver + "/hook"),
    ):
        sent = offer(rate, seconds, [url])
        lat = sent["ingest_latency_ms"]
        good = sum(n for status, n in sent["statuses"].items() if status.startswith("2"))
        failed = f", {sent['sent'] - good} not 2xx" if good != sent["sent"] else ""
        parts.append(f"{name} p50 {lat['p50']} ms p99 {lat['p99']} ms{failed}")
    return "  same rate, same run: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(args)
    results = []
    try:
        db_url = run.pg.database()
        receiver = run.receiver()
        apis = run.gateways(db_url)
        path = setup_pipeline(apis[0], receiver)
        ingest_urls = [api + path for api in apis]
        naive = run.naive(db_url) if args.baselines else None
        print(f"code: {code_version()}", flush=True)  # what `gethookd run` imports too
        print(
            f"{args.instances} gethookd instance(s), WORKER_MAX_CONCURRENCY={args.concurrency}, "
            f"{os.cpu_count()} CPUs, {args.seconds:g}s per rate, LOG_LEVEL={args.log_level}",
            flush=True,
        )
        # A short warm-up: connections, caches and pools are not what this measures.
        one_rate(args, 50, ingest_urls, receiver)
        if naive:
            offer(50, 3, [naive])
        if args.host_probe > 0:
            # A p99 on a shared VM can measure the host: say what it was doing.
            print(hoststall.probe(args.host_probe).summary(), flush=True)
        for rate in args.rate_list:
            result = one_rate(args, rate, ingest_urls, receiver)
            results.append(result)
            lat = result["latency_ms"]
            ing = result["sent"]["ingest_latency_ms"]
            print(
                f"offered {rate:6.0f}/s: accepted {result['accepted_per_s']:7.0f}/s "
                f"({result['accepted']}/{result['sent']['sent']}), "
                f"delivered {result['delivered_per_s']:7.0f}/s, "
                f"ingest->delivery p50 {lat['p50']} ms p99 {lat['p99']} ms, "
                f"ingest answer p50 {ing['p50']} ms p99 {ing['p99']} ms, "
                f"lost {result['lost']}, duplicates {result['duplicates']}",
                flush=True,
            )
            if result["sent"]["errors"]:
                print(f"  sender errors: {result['sent']['errors']}", flush=True)
            if naive:
                print(baselines(rate, args.seconds, naive, receiver), flush=True)
    finally:
        run.stop()
    lost = sum(r["lost"] for r in results)
    dups = sum(r["duplicates"] for r in results)
    print(f"nothing lost: {'yes' if lost == 0 else f'NO ({lost})'}; duplicates: {dups}")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
