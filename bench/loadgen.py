"""An open-loop webhook sender: a fixed offered rate, whatever the server's pace.

wrk and hey are closed-loop (a slow answer slows the sender, hiding the queueing a real
provider would cause) and send one fixed body; this sender schedules request i at
start + i / rate, stamps each body with its number and the time it was sent (so the
receiver measures ingest-to-delivery latency), and measures each answer from its
scheduled time, so lateness counts.

It shares the machine with what it measures, so it is one epoll loop over non-blocking
keep-alive sockets: no thread or greenlet per request (a gevent version used a fifth of a
core at 1,000/s, three times this one).

    python bench/loadgen.py --rate 1000 --seconds 20 URL [URL ...]

prints one JSON line: sent, status counts, ingest latency percentiles, achieved rate.
Requests go round-robin over the URLs (several gethookd instances).
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from collections import Counter, deque
from urllib.parse import urlsplit


class Connection:
    """One keep-alive connection: at most one request in flight."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.sock = socket.create_connection((target.host, target.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.scheduled = 0.0  # of the request in flight
        self.busy = False  # a request is in flight

    def answer(self) -> tuple[int, bool] | None:
        """The status of the answer in the buffer, and whether the server closes the
        connection after it, once the answer is complete (else None)."""
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = self.buf[:head_end]
        length = 0
        close = False
        lines = head.split(b"\r\n")
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        end = head_end + 4 + length
        if len(self.buf) < end:
            return None
        self.buf = self.buf[end:]
        return int(lines[0].split(b" ")[1]), close


class Target:
    def __init__(self, url: str, max_connections: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.max_connections = max_connections
        self.open = 0
        self.idle: deque[Connection] = deque()
        self.waiting: deque[tuple[int, float]] = deque()  # (i, scheduled): no connection free
        self.head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: "
        ).encode()


def run(
    urls: list[str],
    rate: float,
    seconds: float,
    connections: int,
    event_type: str,
    trace: str | None = None,
) -> dict:
    targets = [Target(url, connections) for url in urls]
    total = int(rate * seconds)
    statuses: Counter = Counter()
    errors: Counter = Counter()
    latencies: list[float] = []
    traced: list[tuple[float, float]] = []  # (scheduled, latency) for --trace
    selector = selectors.DefaultSelector()
    in_flight = 0
    prefix = '{"type": ' + json.dumps(event_type) + ', "n": '

    def close(conn: Connection) -> None:
        conn.target.open -= 1
        selector.unregister(conn.sock)
        conn.sock.close()
        if conn.target.waiting:  # a new connection takes the next one waiting
            send(conn.target, *conn.target.waiting.popleft())

    def fail(conn: Connection | None, exc: Exception) -> None:
        errors[type(exc).__name__] += 1
        statuses["error"] += 1
        if conn is not None:
            close(conn)

    def send(target: Target, i: int, scheduled: float) -> None:
        nonlocal in_flight
        conn = target.idle.popleft() if target.idle else None
        if conn is None:
            if target.open >= target.max_connections:
                target.waiting.append((i, scheduled))
                return
            try:
                conn = Connection(target)
            except OSError as exc:
                fail(None, exc)
                return
            target.open += 1
            selector.register(conn.sock, selectors.EVENT_READ, conn)
        body = f'{prefix}{i}, "t": {time.time()!r}}}'.encode()
        request = target.head + str(len(body)).encode() + b"\r\n\r\n" + body
        try:
            n = conn.sock.send(request)  # a small request on an idle socket: sent whole
            if n < len(request):  # else finish it blocking (never seen)
                conn.sock.settimeout(10)
                conn.sock.sendall(request[n:])
                conn.sock.setblocking(False)
        except OSError as exc:
            fail(conn, exc)
            return
        conn.scheduled = scheduled
        conn.busy = True
        in_flight += 1

    def receive(conn: Connection) -> None:
        nonlocal in_flight
        if not conn.busy:  # an idle connection the server closed (its keep-alive timeout)
            try:
                still_open = conn.sock.recv(65536) != b""
            except BlockingIOError:
                return
            except OSError:
                still_open = False
            if not still_open:
                conn.target.idle.remove(conn)
                close(conn)
            return
        try:
            chunk = conn.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("server closed the connection")
            conn.buf += chunk
            answered = conn.answer()
        except (OSError, ValueError, IndexError) as exc:
            in_flight -= 1
            conn.busy = False
            fail(conn, exc)
            return
        if answered is None:
            return
        status, closing = answered
        in_flight -= 1
        conn.busy = False
        statuses[str(status)] += 1
        latencies.append(time.monotonic() - conn.scheduled)
        if trace:
            traced.append((conn.scheduled, latencies[-1]))
        if closing:  # answered, then closed by the server: the next request opens another
            close(conn)
            return
        target = conn.target
        target.idle.append(conn)
        if target.waiting:
            send(target, *target.waiting.popleft())

    started = time.monotonic()
    deadline = started + seconds + 60
    offered_span = None
    sent = 0
    while True:
        now = time.monotonic()
        due = min(total, int((now - started) * rate) + 1)
        while sent < due:
            send(targets[sent % len(targets)], sent, started + sent / rate)
            sent += 1
        backlog = any(t.waiting for t in targets)
        if sent >= total and not in_flight and not backlog:
            break
        if now > deadline:
            errors["unanswered"] += in_flight + sum(len(t.waiting) for t in targets)
            break
        wait = (started + sent / rate - time.monotonic()) if sent < total else 0.5
        for key, _ in selector.select(max(0.0, wait)):
            receive(key.data)
        if sent == total and offered_span is None:
            offered_span = time.monotonic() - started
    if trace:
        # One line per answer: seconds from the start to its scheduled send (the first line:
        # the start as Unix time, to line it up with other logs), and its latency in ms.
        wall_start = time.time() - (time.monotonic() - started)
        with open(trace, "w") as out:
            out.write(f"start {wall_start:.3f}\n")
            out.writelines(f"{at - started:.4f} {took * 1000:.2f}\n" for at, took in traced)
    lat = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

    return {
        "sent": total,
        "offered_rate": round(total / (offered_span or time.monotonic() - started), 1),
        "statuses": dict(statuses),
        "errors": dict(errors),
        "ingest_latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1)},
        "seconds": round(time.monotonic() - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls", nargs="+", metavar="URL")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send")
    parser.add_argument("--connections", type=int, default=256, help="max open connections per URL")
    parser.add_argument("--event-type", default="bench.e2e", help='the body\'s "type"')
    parser.add_argument(
        "--trace", metavar="FILE", help="write each answer's scheduled time and latency there"
    )
    args = parser.parse_args(argv)
    result = run(args.urls, args.rate, args.seconds, args.connections, args.event_type, args.trace)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
