"""An open-loop webhook sender: a fixed offered rate, whatever the server's pace.

wrk and hey are closed-loop (a slow answer slows the sender, hiding the queueing a real
provider would cause) and send one fixed body; this sender schedules request i at
start + i / rate, stamps each body with its number and the time it was sent (so the
receiver measures ingest-to-delivery latency), and measures each answer from its
scheduled time, so lateness counts. gevent and raw keep-alive sockets keep it cheap.

    python bench/loadgen.py --rate 1000 --seconds 20 URL [URL ...]

prints one JSON line: sent, status counts, ingest latency percentiles, achieved rate.
Requests go round-robin over the URLs (several gethookd instances).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
import gevent.lock  # noqa: E402
import gevent.queue  # noqa: E402


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def post(self, request: bytes) -> int:
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        self.buf = self.buf[length:]
        if close:
            self.close()
            raise ConnectionResetError("server closed the connection")  # reopened next time
        return status

    def close(self) -> None:
        self.sock.close()


class Target:
    def __init__(self, url: str, max_connections: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.idle: gevent.queue.Queue = gevent.queue.Queue()
        self.slots = gevent.lock.BoundedSemaphore(max_connections)

    def request(self, body: bytes) -> bytes:
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body


def run(urls: list[str], rate: float, seconds: float, connections: int, event_type: str) -> dict:
    targets = [Target(url, connections) for url in urls]
    total = int(rate * seconds)
    statuses: Counter = Counter()
    latencies: list[float] = []
    errors: Counter = Counter()

    def one(i: int, scheduled: float) -> None:
        target = targets[i % len(targets)]
        body = json.dumps({"type": event_type, "n": i, "t": time.time()}).encode()
        with target.slots:
            try:
                conn = target.idle.get_nowait()
            except gevent.queue.Empty:
                conn = None
            try:
                if conn is None:
                    conn = Connection(target.host, target.port)
                status = conn.post(target.request(body))
                target.idle.put(conn)
            except (OSError, ValueError, IndexError) as exc:
                if conn is not None:
                    conn.close()
                errors[type(exc).__name__] += 1
                statuses["error"] += 1
                return
        statuses[str(status)] += 1
        latencies.append(time.monotonic() - scheduled)

    started = time.monotonic()
    greenlets = []
    for i in range(total):
        scheduled = started + i / rate
        pause = scheduled - time.monotonic()
        if pause > 0:
            gevent.sleep(pause)
        greenlets.append(gevent.spawn(one, i, scheduled))
    offered_span = time.monotonic() - started
    gevent.joinall(greenlets, timeout=60)
    lat = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

    return {
        "sent": total,
        "offered_rate": round(total / offered_span, 1),
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
    args = parser.parse_args(argv)
    result = run(args.urls, args.rate, args.seconds, args.connections, args.event_type)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
