"""A fast webhook receiver for the benchmarks: answers 200, counts, measures latency.

Runs in its own process, one epoll loop over non-blocking sockets (TCP_NODELAY, keep-alive;
a delayed answer waits in a timer heap, not in a thread), so that the receiver is never
what a benchmark measures and takes little of the CPU it shares with the gateway. Each
POST whose JSON body carries `"t"` (the sender's time.time() when the webhook entered the
system) adds one end-to-end latency sample; `Webhook-Id` (or `"n"` in the body) counts
distinct deliveries, so duplicates show.

    python bench/receiver.py [--delay SECONDS] [--port N] [--reuse-port]

prints the port it listens on, then serves until killed. `GET /stats` answers a JSON
summary; `POST /reset` forgets everything.
"""

from __future__ import annotations

import argparse
import heapq
import json
import selectors
import socket
import sys
import time

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


class Client:
    """One keep-alive connection: requests are answered in order, one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.answering = False  # an answer waits for its delay: parse nothing more yet


def serve(delay: float, port: int, reuse_port: bool = False) -> None:
    stats = Stats()
    selector = selectors.DefaultSelector()
    later: list[tuple[float, int, Client]] = []  # (when, tiebreak, client): delayed answers
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # several receiver processes on one port, the kernel spreading connections
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1024)
    server.setblocking(False)
    selector.register(server, selectors.EVENT_READ, None)
    print(server.getsockname()[1], flush=True)

    def drop(client: Client) -> None:
        selector.unregister(client.sock)
        client.sock.close()

    def answer(client: Client, data: bytes) -> None:
        try:
            client.sock.sendall(data)  # small answers on a socket that keeps up
        except OSError:
            drop(client)

    def work(client: Client) -> None:
        """Answer every complete request in the buffer (until one must wait its delay)."""
        while not client.answering:
            head_end = client.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = client.buf[:head_end].split(b"\r\n")
            method, path = lines[0].split(b" ")[:2]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(client.buf) < head_end + 4 + length:
                return
            body = client.buf[head_end + 4 : head_end + 4 + length]
            client.buf = client.buf[head_end + 4 + length :]
            if method == b"GET" and path == b"/stats":
                payload = json.dumps(stats.summary()).encode()
                answer(
                    client,
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload,
                )
                continue
            if method == b"POST" and path == b"/reset":
                stats.reset()
                answer(client, OK)
                continue
            webhook_id = headers.get(b"webhook-id")
            stats.record(webhook_id.decode() if webhook_id else None, body)
            if delay:
                client.answering = True
                heapq.heappush(later, (time.monotonic() + delay, id(client), client))
            else:
                answer(client, OK)

    while True:
        timeout = max(0.0, later[0][0] - time.monotonic()) if later else None
        for key, _ in selector.select(timeout):
            if key.data is None:
                try:
                    sock, _addr = server.accept()
                except BlockingIOError:
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, Client(sock))
                continue
            client = key.data
            try:
                chunk = client.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                drop(client)
                continue
            client.buf += chunk
            try:
                work(client)
            except (ValueError, IndexError):
                drop(client)
        now = time.monotonic()
        while later and later[0][0] <= now:
            _, _, client = heapq.heappop(later)
            if client.sock.fileno() < 0:
                continue  # dropped meanwhile
            client.answering = False
            answer(client, OK)
            if client.sock.fileno() >= 0:
                try:
                    work(client)
                except (ValueError, IndexError):
                    drop(client)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument(
        "--reuse-port", action="store_true", help="share the port with other receivers"
    )
    args = parser.parse_args(argv)
    serve(args.delay, args.port, args.reuse_port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
