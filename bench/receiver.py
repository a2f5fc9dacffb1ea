"""A fast webhook receiver for the benchmarks: answers 200, counts, measures latency.

Runs in its own process (gevent, raw sockets, TCP_NODELAY) so that the receiver is never
what a benchmark measures. Each POST whose JSON body carries `"t"` (the sender's
time.time() when the webhook entered the system) adds one end-to-end latency sample;
`Webhook-Id` (or `"n"` in the body) counts distinct deliveries, so duplicates show.

    python bench/receiver.py [--delay SECONDS] [--port N]

prints the port it listens on, then serves until killed. `GET /stats` answers a JSON
summary; `POST /reset` forgets everything.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.ids: set[str] = set()
        self.duplicates = 0
        self.latencies: list[float] = []
        self.first = self.last = None

    def record(self, webhook_id: str | None, body: bytes) -> None:
        now = time.time()
        self.requests += 1
        self.first = self.first or now
        self.last = now
        t = n = None
        if body[:1] == b"{":
            try:
                doc = json.loads(body)
                t, n = doc.get("t"), doc.get("n")
            except ValueError:
                pass
        key = webhook_id or (str(n) if n is not None else None)
        if key is not None:
            if key in self.ids:
                self.duplicates += 1
            else:
                self.ids.add(key)
                if isinstance(t, int | float):
                    self.latencies.append(now - t)

    def summary(self) -> dict:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        return {
            "requests": self.requests,
            "distinct": len(self.ids),
            "duplicates": self.duplicates,
            "first": self.first,
            "last": self.last,
            "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1)},
        }


def serve(delay: float, port: int) -> None:
    stats = Stats()

    def handle(sock: socket.socket, _addr) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path = lines[0].split(b" ")[:2]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get(b"content-length", b"0"))
                while len(buf) < length:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                body, buf = buf[:length], buf[length:]
                if method == b"GET" and path == b"/stats":
                    payload = json.dumps(stats.summary()).encode()
                    sock.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
                    )
                    continue
                if method == b"POST" and path == b"/reset":
                    stats.reset()
                    sock.sendall(OK)
                    continue
                webhook_id = headers.get(b"webhook-id")
                stats.record(webhook_id.decode() if webhook_id else None, body)
                if delay:
                    gevent.sleep(delay)
                sock.sendall(OK)
        except (OSError, ValueError):
            return
        finally:
            sock.close()

    server = StreamServer(("127.0.0.1", port), handle, backlog=1024)
    server.init_socket()
    print(server.server_port, flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    args = parser.parse_args(argv)
    serve(args.delay, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
