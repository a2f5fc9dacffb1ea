"""Test helpers: condition waits, a recording HTTP sink, a daemon under test, an API client."""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import requests

# Events as readers see them: the claim does not write an event's status or attempts, which
# are read with the deliveries in flight (migration 0015). Use with
# gethookd.services.events.as_now().
EVENTS_NOW = (
    "SELECT e.*, gethookd_event_status(e.id, e.status) AS live_status,"
    " gethookd_event_attempts(e.id, e.attempts_count) AS live_attempts FROM events e"
)


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until condition() is truthy; fail with `what` after timeout. Never a bare sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def sql_rows(db_url: str, query: str, params: Any = None) -> list[tuple]:
    """Run one statement on its own connection and commit; its rows, if it returns any."""
    conn = psycopg2.connect(db_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def claim_plan(db_url: str, limit: int, lease_seconds: float = 60) -> dict:
    """The top node of one claim's plan as EXPLAIN (ANALYZE, BUFFERS) ran it, rolled back
    after: what a claim of `limit` reads, with nothing claimed."""
    from gethookd import queue
    from gethookd.db import QUERIES

    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + QUERIES["claim_deliveries"],
                queue.claim_params(limit, lease_seconds),
            )
            [[plan]] = cur.fetchall()
        conn.rollback()
    finally:
        conn.close()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return plan[0]["Plan"]


def vacuums_of_deliveries(db_url: str) -> int:
    """How many times the deliveries table was vacuumed by hand (not by autovacuum)."""
    [(count,)] = sql_rows(
        db_url, "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'deliveries'"
    )
    return count


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TCPServer:
    """A TCP listener on 127.0.0.1 whose thread hands each connection it accepts to
    `handle(conn)`, on a thread of its own.

    close() wakes the accept before it closes the socket. A thread left blocked in accept()
    on a closed socket is not done with it: when its call is interrupted and restarted (the
    process stopped and continued, for one), the kernel restarts it on the same descriptor
    *number*, which by then may be a later test's listener. Such a thread took a later test's
    delivery and drip-fed it an earlier test's answer."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.connections += 1
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # the blocked accept() returns EINVAL
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)


class Sink:
    """A real HTTP server on 127.0.0.1 that records each request.

    `responder(request_number, path, body)` returns (status, delay_seconds); default 200 at once.
    """

    def __init__(self, responder: Callable[[int, str, bytes], tuple[int, float]] | None = None):
        self.requests: list[dict] = []
        self.responder = responder or (lambda n, path, body: (200, 0.0))
        self.lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out without a 40 ms stall

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with sink.lock:
                    number = len(sink.requests) + 1
                    sink.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                status, delay = sink.responder(number, self.path, body)
                if delay:
                    time.sleep(delay)
                payload = b"ok" if status < 400 else b"failing on purpose"
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128  # many deliveries connect at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [r["body"] for r in self.requests]

    def event_ids(self) -> list[str]:
        with self.lock:
            return [r["headers"].get("Webhook-Id") for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def gethookd_command() -> list[str]:
    exe = Path(sys.executable).parent / "gethookd"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("gethookd")
    if found:
        return [found]
    return [sys.executable, "-m", "gethookd.cli"]


class Daemon:
    """A real `gethookd run` in a subprocess, on its own port."""

    def __init__(self, env: dict[str, str], log_path: Path, role: str = "all") -> None:
        self.port = free_port()
        self.env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1", **env}
        self.env.setdefault("BASE_URL", f"http://127.0.0.1:{self.port}")
        self.log_path = log_path
        self.role = role
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True) -> None:
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [*gethookd_command(), "run", "--role", self.role],
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"gethookd exited early:\n{self.log()}")
            if self.role == "worker":
                return "delivery process 1 ready" in self.log()
            try:
                return requests.get(self.url + "/readyz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, timeout, "gethookd to become ready")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> dict[str, list[int]]:
        """Role title -> pids of the master's direct children."""
        import psutil

        found: dict[str, list[int]] = {}
        for child in psutil.Process(self.proc.pid).children():
            try:
                title = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if "delivery worker" in title:
                found.setdefault("worker", []).append(child.pid)
            elif "gunicorn" in title or "gethookd: api" in title:
                found.setdefault("api", []).append(child.pid)
        return found

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        import psutil

        family = []  # children lead their own process groups: killpg(master) misses them
        if self.proc and self.proc.poll() is None:
            try:
                family = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.Error:
                pass
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # anything left in its group
            except ProcessLookupError:
                pass
        for leftover in family:
            try:
                leftover.kill()
            except psutil.Error:
                pass
        if hasattr(self, "log_file"):
            self.log_file.close()


class Api:
    """A thin client for the GetHook API wire format."""

    def __init__(self, base_url: str, key: str | None = None) -> None:
        self.base = base_url
        self.key = key

    def call(self, method: str, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if self.key:
            headers.setdefault("Authorization", f"Bearer {self.key}")
        return requests.request(
            method, self.base + path, json=json, headers=headers, timeout=10, **kwargs
        )

    def data(self, method: str, path: str, json: Any = None, status: int = 200) -> Any:
        resp = self.call(method, path, json)
        assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json()["data"]

    def register(self, email: str = "owner@example.com") -> Api:
        boot = self.data(
            "POST",
            "/v1/auth/register",
            {"email": email, "password": "correct horse", "name": "Acme"},
            status=201,
        )
        return Api(self.base, boot["api_key"]["key"])

    def pipeline(self, sink_url: str, **route: Any) -> dict:
        """source -> route -> destination; returns the three objects."""
        source = self.data("POST", "/v1/sources", {"name": "provider"}, status=201)
        dest = self.data(
            "POST", "/v1/destinations", {"name": "sink", "url": sink_url + "/hook"}, status=201
        )
        body = {"source_id": source["id"], "destination_id": dest["id"], **route}
        created = self.data("POST", "/v1/routes", body, status=201)
        return {"source": source, "destination": dest, "route": created}


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def headless_chromium(profile: str, height: int = 900, browser_log: bool = False) -> Any:
    """Debian's chromium under its chromedriver, headless, with a fresh profile directory.

    The background-networking flags keep it from reaching for Google's hosts, which this
    machine's closed network refuses many times a second.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size=1280,{height}",
    ):
        options.add_argument(flag)
    if browser_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class CountingStream(io.StringIO):
    """A text stream that counts its writes (how many a batch of log lines took)."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)
