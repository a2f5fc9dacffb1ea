#!/usr/bin/env python3
"""Ingest throughput of the gethookd API against a naive baseline, measured in the same run.

What it does, all on this machine (127.0.0.1 and a local PostgreSQL only):

  1. starts an embedded PostgreSQL (or uses --database-url) and a scratch database;
  2. creates an account, a source with one route (to a destination that is never called:
     no delivery process runs) and a source with no route;
  3. starts `gethookd run --role api`, the naive baseline (bench/naive_app.py: falcon +
     psycopg2, one INSERT + COMMIT per request, gunicorn 2 gthread workers x 4 threads)
     and the ceiling (naive_app:ceiling: the same gunicorn worker class and falcon as
     gethookd's API, answering 202 without any database: what no ingest here can beat);
  4. runs wrk (--connections, default 64) against the naive app, both ingest URLs and the
     ceiling, each after a short warm-up, and prints req/s, p50/p99 and the ratio;
  5. checks that every 2xx answered is a stored row (and each gethookd event of the routed
     source has its delivery), then stops everything it started.

wrk is the Debian/Ubuntu package `wrk` (apt-get install wrk); on macOS `brew install wrk`.
To measure another checkout of gethookd (e.g. the commit before a change), pass
--gethookd-root DIR: its code serves the API (the setup uses this checkout's code, so the
schema and catalog calls must match).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import NAIVE_TABLE, Postgres, free_port, gunicorn, naive_command, wait_http

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

CEILING = "ceiling: HTTP stack alone, no database"
BODY = '{"type": "invoice.paid", "id": "in_1234567890", "amount": 1299, "currency": "eur"}'
WRK_SCRIPT = (
    'wrk.method = "POST"\n'
    f"wrk.body = '{BODY}'\n"
    'wrk.headers["Content-Type"] = "application/json"\n'
    'wrk.headers["X-Event-Type"] = "invoice.paid"\n'
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ingest.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per round (8)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, cases alternating (5)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per run (3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="a PostgreSQL server to use (needs CREATEDB); default: an embedded one",
    )
    parser.add_argument(
        "--gethookd-root", default=str(ROOT), help="checkout whose code serves the gethookd API"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra setting for the gethookd API (e.g. API_THREADS=32); repeatable",
    )
    parser.add_argument("--log-level", default="info", help="gethookd LOG_LEVEL (info)")
    return parser.parse_args(argv)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise SystemExit(f"cannot read the latency {text!r} in wrk's output")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, script: Path, args: argparse.Namespace, seconds: int) -> dict:
    out = subprocess.run(
        [
            "wrk",
            f"-t{args.wrk_threads}",
            f"-c{args.connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    if "Latency Distribution" not in out:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    return {
        "requests": total,
        "accepted": total - bad,
        "non2xx": bad,
        "socket_errors": errors.group(1) if errors else "",
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "accepted_rps": (total - bad) / seconds,
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
    }


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="gethookd-bench-ingest-"))
        self.procs: list[subprocess.Popen] = []
        self.pg = Postgres(args.database_url, self.tmp)

    def database(self) -> str:
        import psycopg2

        url = self.pg.database()
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(NAIVE_TABLE)
        return url

    def spawn(self, argv: list[str], env: dict, name: str) -> tuple[subprocess.Popen, Path]:
        log = self.tmp / f"{name}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc, log

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.pg.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (Debian/Ubuntu) or brew install wrk")
        return 2
    import psycopg2

    from gethookd import config as config_mod
    from gethookd.crypto import new_encryption_key
    from gethookd.db import Database
    from gethookd.service import Gateway

    run = Run(args)
    started = time.monotonic()
    try:
        db_url = run.database()
        key = new_encryption_key()
        env = {
            "DATABASE_URL": db_url,
            "ENCRYPTION_KEY": key,
            "GETHOOKD_DATA_DIR": str(run.tmp / "data"),
            "LOG_LEVEL": args.log_level,
            # The receiver listens on loopback, which the SSRF guard refuses by default.
            "ALLOWED_DESTINATION_NETWORKS": "127.0.0.0/8",
        }
        database = Database(db_url, maxconn=2)
        gw = Gateway(config_mod.load(None, env), database)
        account = gw.register("bench", None, None)["account"]["id"]
        routed = gw.create_source(account, "one route")
        unrouted = gw.create_source(account, "no route")
        dest = gw.create_destination(account, "never called", "http://127.0.0.1:9/hook")
        gw.create_route(account, dest["id"], routed["id"])
        database.close()

        port, naive_port = free_port(), free_port()
        root = Path(args.gethookd_root).resolve()
        extra = dict(item.split("=", 1) for item in args.env)
        api_env = {
            **os.environ,
            **env,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "BASE_URL": f"http://127.0.0.1:{port}",
            "PYTHONPATH": str(root),
            # The naive baseline's shape (two worker processes), whatever the machine.
            "API_WORKERS": "2",
            **extra,
        }
        # The checkout under test goes first on sys.path (ahead of an editable install).
        boot = (
            "import sys; sys.path.insert(0, sys.argv.pop(1)); import gethookd;"
            " print('gethookd from', gethookd.__file__, flush=True);"
            " from gethookd.cli import main; sys.argv[0] = 'gethookd'; main()"
        )
        api, api_log = run.spawn(
            [sys.executable, "-c", boot, str(root), "run", "--role", "api"], api_env, "gethookd"
        )
        naive, naive_log = run.spawn(
            naive_command(naive_port),
            {**os.environ, "NAIVE_DATABASE_URL": db_url},
            "naive",
        )
        ceiling_port = free_port()
        # Served as gethookd's API is: its worker class, as many workers as it runs.
        from gethookd.process.api_server import WORKER_CLASSES

        workers = extra.get("API_WORKERS", "2")
        kind = extra.get("API_WORKER_CLASS", "httptools")
        kind = WORKER_CLASSES.get(kind, kind)
        ceiling_proc, ceiling_log = run.spawn(
            gunicorn("naive_app:ceiling", ceiling_port, "-k", kind, "-w", workers),
            {**os.environ, "PYTHONPATH": str(ROOT)},
            "ceiling",
        )
        wait_http(f"http://127.0.0.1:{port}/healthz", api, api_log)
        print(api_log.read_text().splitlines()[0], flush=True)
        wait_http(f"http://127.0.0.1:{naive_port}/", naive, naive_log)
        wait_http(f"http://127.0.0.1:{ceiling_port}/", ceiling_proc, ceiling_log)
        script = run.tmp / "post.lua"
        script.write_text(WRK_SCRIPT)

        cases = [
            ("naive: INSERT + COMMIT per request", f"http://127.0.0.1:{naive_port}/ingest/x"),
            ("gethookd, source with 1 route", f"http://127.0.0.1:{port}/ingest/"),
            ("gethookd, source with no route", f"http://127.0.0.1:{port}/ingest/"),
            (CEILING, f"http://127.0.0.1:{ceiling_port}/ingest/x"),
        ]
        cases[1] = (cases[1][0], cases[1][1] + routed["path_token"])
        cases[2] = (cases[2][0], cases[2][1] + unrouted["path_token"])
        # Rounds alternate the cases, so a change in the machine's load (it is shared)
        # touches every case alike; each case's figures are the median of its rounds.
        rounds: dict[str, list[dict]] = {name: [] for name, _url in cases}
        accepted_total = dict.fromkeys(rounds, 0)
        for name, url in cases:
            accepted_total[name] += wrk(url, script, args, args.warmup)["accepted"]
        for number in range(args.rounds):
            for name, url in cases:
                print(f"round {number + 1}/{args.rounds}, wrk -c{args.connections}: {name}")
                result = wrk(url, script, args, args.duration)
                rounds[name].append(result)
                accepted_total[name] += result["accepted"]
        results = {
            name: {
                key: statistics.median(r[key] for r in runs)
                for key in ("rps", "accepted_rps", "p50", "p99", "non2xx")
            }
            | {"socket_errors": "; ".join(r["socket_errors"] for r in runs if r["socket_errors"])}
            for name, runs in rounds.items()
        }

        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM naive_events")
            naive_rows = cur.fetchone()[0]
            counts = {}
            for source in (routed, unrouted):
                cur.execute(
                    "SELECT count(*), (SELECT count(*) FROM deliveries d JOIN events e2"
                    " ON e2.id = d.event_id WHERE e2.source_id = %s)"
                    " FROM events WHERE source_id = %s",
                    (source["id"], source["id"]),
                )
                counts[source["id"]] = cur.fetchone()
        conn.close()
    finally:
        run.stop()

    base = results[cases[0][0]]
    print()
    print(
        f"ingest, {args.connections} connections, median of {args.rounds} rounds of "
        f"{args.duration}s, same machine"
    )
    print(f"{'case':<36} {'req/s':>9} {'2xx/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}")
    for name, _url in cases:
        r = results[name]
        ratio = r["accepted_rps"] / base["accepted_rps"] if base["accepted_rps"] else 0.0
        print(
            f"{name:<36} {r['rps']:>9.0f} {r['accepted_rps']:>9.0f} {r['p50']:>8.1f} "
            f"{r['p99']:>8.1f} {ratio:>5.2f}x"
            + (f"  non-2xx {r['non2xx']:.0f}" if r["non2xx"] else "")
            + (f"  socket errors: {r['socket_errors']}" if r["socket_errors"] else "")
        )
    top = results[CEILING]["accepted_rps"]
    if top and base["accepted_rps"]:
        print(
            f"the HTTP stack alone serves {top / base['accepted_rps']:.2f}x the naive baseline "
            f"here: no ingest on this server and machine can reach a higher ratio; gethookd "
            f"(1 route) reaches {results[cases[1][0]]['accepted_rps'] / top:.0%} of it"
        )
    # Every 2xx must be a stored row; a request cut off when wrk stops may be stored unanswered.
    checks = [
        ("naive", naive_rows, accepted_total[cases[0][0]], None),
        ("1 route", *_pair(counts[routed["id"]]), accepted_total[cases[1][0]]),
        ("no route", *_pair(counts[unrouted["id"]]), accepted_total[cases[2][0]]),
    ]
    ok = True
    print()
    for name, stored, extra_n, accepted in checks:
        if accepted is None:
            accepted, deliveries = extra_n, None
        else:
            deliveries = extra_n
        good = accepted <= stored <= accepted + (args.rounds + 1) * args.connections
        if name == "1 route":
            good = good and deliveries == stored
        ok = ok and good
        print(
            f"stored check {name}: {accepted} answered 2xx, {stored} rows stored"
            + (f", {deliveries} deliveries" if deliveries is not None else "")
            + (" ok" if good else "  MISMATCH")
        )
    print(f"total {time.monotonic() - started:.0f}s")
    return 0 if ok else 1


def _pair(row: tuple) -> tuple[int, int]:
    return int(row[0]), int(row[1])


if __name__ == "__main__":
    sys.exit(main())
