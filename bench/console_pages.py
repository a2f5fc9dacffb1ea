"""How fast each console page loads with 100 thousand events stored.

    python bench/console_pages.py                       # 100k events, 20 rounds per call
    python bench/console_pages.py --events 1000000
    python bench/console_pages.py --screenshot docs/console.png

Starts an embedded PostgreSQL (or uses --database-url), `gethookd run --role api`, creates
an account with sources and destinations through the API, and stores N events (30 days,
mostly delivered, some dead-lettered or waiting) with their deliveries and attempts by SQL.
Then, signed in with the console's session cookie:

1. each page's API calls, timed one after another (median and p95 of --rounds), their sum
   being the page's API time; the baseline, measured in the same run, is GET /healthz (a
   round trip through the same server with no database work);
2. each page in headless chromium: Navigation Timing's domContentLoaded and load, and the
   `console:rendered` mark app.js sets once the page is drawn with its API answers (median
   of --loads full document loads).

Target: every page drawn in under 200 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from benchlib import Postgres, code_version, start_api  # noqa: E402
from helpers import headless_chromium  # noqa: E402

TARGET_MS = 200.0
SEED = """
CREATE TEMP TABLE g AS
SELECT i, gen_random_uuid() AS id, gen_random_uuid() AS delivery_id,
       now() - power(i::float / %(n)s, 1.3) * interval '30 days' AS at,
       CASE WHEN i %% 33 = 0 THEN 'dead_letter' WHEN i %% 50 = 1 THEN 'retry_scheduled'
            WHEN i %% 97 = 2 THEN 'queued'
            -- an afternoon when one destination was down
            WHEN i BETWEEN %(n)s * 0.40 AND %(n)s * 0.42 AND i %% 3 = 0 THEN 'dead_letter'
            ELSE 'delivered' END AS status
FROM generate_series(1, %(n)s) i;
INSERT INTO events (id, account_id, direction, source_id, event_type, headers, body,
                    content_type, status, attempts_count, received_at, created_at)
SELECT id, %(account)s, 'inbound', (%(sources)s::uuid[])[1 + i %% 2],
       (ARRAY['order.created', 'order.paid', 'refund.issued', 'customer.updated'])[1 + i %% 4],
       '{"content-type": "application/json", "user-agent": "bench"}',
       convert_to('{"type": "order.created", "n": ' || i || ', "amount": 12.5}', 'UTF8'),
       'application/json', status, CASE WHEN status = 'queued' THEN 0 ELSE 1 END, at, at
FROM g;
INSERT INTO deliveries (id, event_id, destination_id, account_id, status, attempt_count,
                        max_attempts, next_attempt_at, created_at, updated_at)
SELECT delivery_id, id, (%(dests)s::uuid[])[1 + i %% 3], %(account)s,
       CASE status WHEN 'delivered' THEN 'succeeded' WHEN 'dead_letter' THEN 'dead'
            ELSE 'pending' END,
       CASE WHEN status = 'queued' THEN 0 ELSE 1 END, 5, now() + interval '1 day', at, at
FROM g;
INSERT INTO delivery_attempts (delivery_id, event_id, destination_id, attempt_number,
                               started_at, finished_at, response_status, response_body,
                               error_message, latency_ms, outcome)
SELECT delivery_id, id, (%(dests)s::uuid[])[1 + i %% 3], 1, at, at + interval '40 ms',
       CASE WHEN status = 'delivered' THEN 200 ELSE 503 END,
       CASE WHEN status = 'delivered' THEN 'ok' ELSE 'unavailable' END,
       CASE WHEN status = 'delivered' THEN NULL ELSE 'HTTP 503' END,
       20 + i %% 80, CASE WHEN status = 'delivered' THEN 'success' ELSE 'http_5xx' END
FROM g WHERE status <> 'queued';
ANALYZE;
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20, help="timings per API call")
    parser.add_argument("--loads", type=int, default=5, help="browser loads per page")
    parser.add_argument("--screenshot", type=Path, help="save the Overview page as this PNG")
    parser.add_argument("--no-browser", action="store_true", help="API timings only")
    return parser.parse_args(argv)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(session, url: str, rounds: int) -> tuple[float, float]:
    """Median and p95 in ms of GET url (two warm-up calls first)."""
    samples = []
    for n in range(rounds + 2):
        start = time.perf_counter()
        resp = session.get(url, timeout=30)
        elapsed = (time.perf_counter() - start) * 1000
        if resp.status_code != 200:
            raise SystemExit(f"GET {url}: {resp.status_code} {resp.text[:300]}")
        if n >= 2:
            samples.append(elapsed)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def page_calls(base: str, event_id: str, caps: set[str]) -> dict[str, list[str]]:
    """The API calls each console page makes (as the modules in gethookd/console do)."""
    events_q = "?limit=25&include_total=false" if "include_total" in caps else "?limit=25"
    dead_q = events_q + "&status=dead_letter"
    shared = [base + "/v1/console/session"]
    meta = [base + "/openapi.json", base + "/v1/sources", base + "/v1/destinations"]
    calls = {
        "overview": [*shared, base + "/v1/stats"],
        "events": [*shared, *meta, base + "/v1/events" + events_q],
        "event": [*shared, base + f"/v1/events/{event_id}", base + "/v1/destinations"],
        "dead-letters": [*shared, *meta, base + "/v1/events" + dead_q],
        "destinations": [*shared, base + "/v1/destinations"],
        "sources": [*shared, base + "/v1/sources"],
    }
    if "destination-stats" in caps:
        calls["destinations"].append(base + "/v1/destination-stats?hours=24")
    if "source-stats" in caps:
        calls["sources"].append(base + "/v1/source-stats?hours=24")
    return calls


PATHS = {
    "overview": "/console/",
    "events": "/console/events",
    "event": "/console/events/{event_id}",
    "dead-letters": "/console/dead-letters",
    "destinations": "/console/destinations",
    "sources": "/console/sources",
}


def browser_timings(base: str, email: str, event_id: str, loads: int, screenshot: Path | None):
    from selenium.webdriver.common.by import By

    profile = tempfile.mkdtemp(prefix="gethookd-bench-chromium-")
    driver = headless_chromium(profile, height=860)
    results = {}
    try:
        driver.get(base + "/console/sign-in")
        wait(driver, lambda: driver.find_elements(By.ID, "signin-email"))
        driver.find_element(By.ID, "signin-email").send_keys(email)
        driver.find_element(By.ID, "signin-password").send_keys("correct horse")
        driver.find_element(By.ID, "signin-submit").click()
        wait(driver, lambda: not driver.find_element(By.ID, "nav").get_attribute("hidden"))
        # The browser's floor: navigating to a tiny JSON document with no script at all.
        floor = []
        for _ in range(loads + 1):
            driver.get(base + "/healthz")
            floor.append(
                driver.execute_script(
                    "return performance.getEntriesByType('navigation')[0].loadEventEnd"
                )
            )
        results["baseline /healthz"] = (None, statistics.median(floor[1:]), None)
        for name, path in PATHS.items():
            url = base + path.format(event_id=event_id)
            dcl, load, drawn = [], [], []
            for _ in range(loads + 1):  # the first load warms the cache
                driver.get(url)
                mark = wait(
                    driver,
                    lambda: driver.execute_script(
                        "const m = performance.getEntriesByName('console:rendered');"
                        "return m.length ? m[0].startTime : null"
                    ),
                )
                nav = driver.execute_script(
                    "const n = performance.getEntriesByType('navigation')[0];"
                    "return [n.domContentLoadedEventEnd, n.loadEventEnd]"
                )
                dcl.append(nav[0])
                load.append(nav[1])
                drawn.append(mark)
            results[name] = tuple(statistics.median(x[1:]) for x in (dcl, load, drawn))
        if screenshot:
            driver.get(base + "/console/")
            wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "svg.chart"))
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
            print(f"screenshot: {screenshot} ({screenshot.stat().st_size // 1024} KiB)")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return results


def wait(driver, condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise SystemExit(f"browser: timed out on {driver.current_url}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import psycopg2
    import requests

    from gethookd.crypto import new_encryption_key

    tmp = Path(tempfile.mkdtemp(prefix="gethookd-bench-console-"))
    pg = Postgres(args.database_url, tmp)
    proc = None
    print(f"code: {code_version()}")
    try:
        db_url = pg.database()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "ENCRYPTION_KEY": new_encryption_key(),
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "BASE_URL": base,
            "ALLOWED_DESTINATION_NETWORKS": "127.0.0.0/8",
            "LOG_LEVEL": "warning",
        }
        proc = start_api(env, tmp / "gethookd.log", timeout=60)

        email = "bench@example.com"
        boot = requests.post(
            base + "/v1/auth/register",
            json={"email": email, "password": "correct horse", "name": "Bench shop"},
            timeout=10,
        ).json()["data"]
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {boot['api_key']['key']}"
        sources = [
            api.post(base + "/v1/sources", json={"name": n}, timeout=10).json()["data"]["id"]
            for n in ("shop", "payments")
        ]
        dests = [
            api.post(
                base + "/v1/destinations",
                json={"name": n, "url": f"http://127.0.0.1:9/{n}"},
                timeout=10,
            ).json()["data"]["id"]
            for n in ("orders", "analytics", "crm")
        ]
        started = time.monotonic()
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute(
                SEED,
                {
                    "n": args.events,
                    "account": boot["account"]["id"],
                    "sources": sources,
                    "dests": dests,
                },
            )
            cur.execute(
                "SELECT id FROM events WHERE status = 'dead_letter' ORDER BY created_at DESC"
                " LIMIT 1"
            )
            event_id = cur.fetchone()[0]
        print(f"stored {args.events:,} events in {time.monotonic() - started:.1f} s")

        session = requests.Session()
        signin = session.post(
            base + "/v1/console/session",
            json={"email": email, "password": "correct horse"},
            timeout=10,
        )
        if signin.status_code != 201:
            raise SystemExit(f"console sign-in: {signin.status_code} {signin.text}")
        doc = session.get(base + "/openapi.json", timeout=10).json()["paths"]
        caps = {p["name"] for p in doc["/v1/events"]["get"].get("parameters", [])}
        caps |= {p.strip("/").split("/")[-1] for p in doc if p.endswith("-stats")}

        base_med, base_p95 = timed(session, base + "/healthz", args.rounds)
        doc_med, _ = timed(session, base + "/console", args.rounds)
        print(f"\nbaseline GET /healthz: median {base_med:.1f} ms, p95 {base_p95:.1f} ms")
        print(f"GET /console (the document): median {doc_med:.1f} ms")
        print(f"\n{'page / API call':<60} {'median':>8} {'p95':>8}")
        for page, urls in page_calls(base, event_id, caps).items():
            total = 0.0
            for url in urls:
                med, p95 = timed(session, url, args.rounds)
                total += med
                print(f"  {url[len(base) :]:<58} {med:>6.1f}ms {p95:>6.1f}ms")
            verdict = "ok" if total < TARGET_MS else "OVER TARGET"
            print(
                f"{page + ': API calls in sequence':<60} {total:>6.1f}ms"
                f"   {total / base_med:.0f}x /healthz, {verdict} (< {TARGET_MS:.0f} ms)"
            )

        if not args.no_browser:
            print(f"\nheadless chromium, median of {args.loads} loads (ms from navigation start)")
            print(f"{'page':<16} {'DOMContentLoaded':>17} {'load':>8} {'drawn':>8}")
            timings = browser_timings(base, email, event_id, args.loads, args.screenshot)
            _, floor, _ = timings.pop("baseline /healthz")
            print(f"{'baseline: /healthz':<16} {'':>17} {floor:>6.0f}ms")
            for page, (dcl, load, drawn) in timings.items():
                verdict = "ok" if drawn < TARGET_MS else "OVER TARGET"
                print(f"{page:<16} {dcl:>15.0f}ms {load:>6.0f}ms {drawn:>6.0f}ms  {verdict}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        pg.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
