"""Answers that speak: Retry-After (both forms) on 429/503 and 410 Gone, parsed from a
real local HTTP server's answers by deliver.send with the delivery session."""

from __future__ import annotations

import email.utils
import http.server
import threading
import time

import pytest

from gethookd.deliver import Outcome, parse_retry_after
from sendrunner import send_all

ALLOWED = ("127.0.0.0/8",)


class Answering:
    """Answers each path with the status and headers registered for it."""

    def __init__(self, answers: dict[str, tuple[int, dict[str, str]]]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers = answers[self.path]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"nope")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_retry_after_gone_and_redirects_from_a_real_server():
    in_90s = email.utils.formatdate(time.time() + 90, usegmt=True)
    answers = {
        "/503-seconds": (503, {"Retry-After": "4"}),
        "/429-date": (429, {"Retry-After": in_90s}),
        "/503-past-date": (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        "/503-junk": (503, {"Retry-After": "soon"}),
        "/503-negative": (503, {"Retry-After": "-5"}),
        "/500-seconds": (500, {"Retry-After": "4"}),  # only 429 and 503 count
        "/503-none": (503, {}),
        "/410": (410, {}),
        "/301": (301, {"Location": "http://127.0.0.1:9/elsewhere"}),
    }
    server = Answering(answers)
    try:
        paths = list(answers)
        outcomes = send_all([server.url + p for p in paths], allowed=ALLOWED)
        got = {p: Outcome(**o) for p, o in zip(paths, outcomes, strict=True)}
    finally:
        server.close()
    assert got["/503-seconds"].retry_after == 4.0
    assert got["/503-seconds"].outcome == "http_5xx"
    assert "Retry-After: 4s" in got["/503-seconds"].error_message
    assert 80 <= got["/429-date"].retry_after <= 91, got["/429-date"]
    assert got["/429-date"].outcome == "http_4xx"
    assert got["/503-past-date"].retry_after == 0.0
    for path in ("/503-junk", "/503-negative", "/500-seconds", "/503-none", "/410", "/301"):
        assert got[path].retry_after is None, path
    assert got["/410"].gone and got["/410"].outcome == "http_4xx"
    assert not any(got[p].gone for p in paths if p != "/410")
    assert got["/301"].outcome == "http_4xx" and not got["/301"].ok
    assert "redirects are not followed" in got["/301"].error_message


@pytest.mark.parametrize(
    "value,expected",
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0),  # now = 40
        ("Thursday, 01-Jan-70 00:01:40 GMT", 60.0),  # RFC 850, obsolete but allowed
        ("Thu Jan  1 00:01:40 1970", 60.0),  # asctime: GMT by definition
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),  # past: at once
        ("1.5", None),
        ("-3", None),
        ("", None),
        ("soon", None),
        ("٣", None),  # a non-ASCII digit is not delta-seconds
        (None, None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=40.0) == expected
