"""A receiver on 127.0.0.1 that answers with a status, a delay and headers of the test's
choosing, and records when each request arrived (wall clock, comparable with the
database's timestamps on this machine)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from typing import Any

Answer = tuple[int, float, dict[str, str]]  # status, seconds before answering, headers


class Receiver:
    def __init__(self, respond: Callable[[int, str, dict, bytes], Answer] | None = None):
        self.respond = respond or (lambda n, path, headers, body: (200, 0.0, {}))
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers)
                with receiver.lock:
                    number = len(receiver.requests) + 1
                    receiver.requests.append(
                        {"at": arrived, "path": self.path, "headers": headers, "body": body}
                    )
                status, delay, extra = receiver.respond(number, self.path, headers, body)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, path: str | None = None) -> int:
        with self.lock:
            return sum(1 for r in self.requests if path is None or r["path"] == path)

    def seen(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
