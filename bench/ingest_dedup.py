#!/usr/bin/env python3
"""What deduplication costs on ingest, against a baseline measured in the same run.

Starts one real `gethookd run --role api` (embedded PostgreSQL in a temporary directory,
or DATABASE_URL if set), makes a source with verification_config.dedup_header, and posts
N webhooks from a thread pool three ways, in one run:

  baseline   no id header: verified, stored, no dedup query at all;
  unique     a new id each time: each claims its key (one insert, one update more);
  repeats    one id over and over: the first is stored, every other answers 200 from the
             dedup row and stores nothing.

Prints each rate and its ratio to the baseline, then stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import start_api  # noqa: E402
from helpers import Api, free_port  # noqa: E402

BODY = b'{"type":"order.created","data":{"id":"ord_1","total":4200}}'


def run_phase(url: str, n: int, threads: int, header) -> float:
    local = threading.local()

    def post(i: int) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        headers = {"Content-Type": "application/json"}
        value = header(i)
        if value is not None:
            headers["X-Request-Id"] = value
        return local.session.post(url, data=BODY, headers=headers, timeout=30).status_code

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        codes = list(pool.map(post, range(n)))
    elapsed = time.perf_counter() - start
    bad = [c for c in codes if c not in (200, 202)]
    if bad:
        raise SystemExit(f"unexpected answers: {bad[:5]}")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="gethookd-bench-dedup-")
    port = free_port()
    env = {
        **os.environ,
        "GETHOOKD_DATA_DIR": tmp,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "warning",
        "API_WORKERS": "2",
    }
    proc = start_api(env, Path(tmp) / "daemon.log")
    base = f"http://127.0.0.1:{port}"
    try:
        api = Api(base).register(f"bench-{uuid.uuid4().hex[:8]}@example.com")
        source = api.data(
            "POST",
            "/v1/sources",
            {"name": "bench", "verification_config": {"dedup_header": "X-Request-Id"}},
            201,
        )
        url = source["ingest_url"]
        run_phase(url, 200, args.threads, lambda i: None)  # warm up
        n, t = args.requests, args.threads
        baseline = run_phase(url, n, t, lambda i: None)
        unique = run_phase(url, n, t, lambda i: uuid.uuid4().hex)
        repeats = run_phase(url, n, t, lambda i: "same-id")
        print(f"ingest, {n} requests, {t} threads, API_WORKERS=2")
        print(f"  baseline (no id)   {baseline:8.0f} req/s")
        print(f"  unique ids         {unique:8.0f} req/s   ratio {unique / baseline:.2f}")
        print(f"  repeats of one id  {repeats:8.0f} req/s   ratio {repeats / baseline:.2f}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        subprocess.run(["rm", "-rf", tmp], check=False)


if __name__ == "__main__":
    main()
