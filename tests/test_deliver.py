"""deliver.send against real HTTP servers on 127.0.0.1.

send() relies on gevent.Timeout, which only interrupts cooperative I/O, so every send
runs in a child Python that monkey-patches itself first (as a delivery process does);
this pytest process is never patched. Pure helpers are tested here directly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time

import pytest

from gethookd import crypto
from gethookd.deliver import RESPONSE_BODY_LIMIT, Request, build_headers, cap_text
from helpers import Sink, TCPServer, free_port, wait_for

# Reads a JSON list of request specs on stdin, sends them all at once from a gevent pool,
# prints one JSON outcome per spec. "outer_timeout" wraps a send in a foreign Timeout.
RUNNER = r"""
from gevent import monkey

monkey.patch_all()

import base64, dataclasses, ipaddress, json, sys
import gevent, gevent.pool
from gethookd import deliver, ssrf

# The delivery client a delivery process uses, opened to the loopback test servers.
session = deliver.new_session(ssrf.Policy((ipaddress.ip_network("127.0.0.0/8"),)), 50)

def one(spec):
    outer = spec.pop("outer_timeout", None)
    spec["body"] = base64.b64decode(spec["body"])
    req = deliver.Request(**spec)
    try:
        with gevent.Timeout(outer):
            return dataclasses.asdict(deliver.send(req, session))
    except gevent.Timeout:
        return {"outcome": "outer timeout escaped send, as it should"}

specs = json.load(sys.stdin)
print(json.dumps(gevent.pool.Pool(max(1, len(specs))).map(one, specs)))
"""


def spec(url: str, body: bytes = b'{"hello":"world"}', **fields) -> dict:
    base = {
        "url": url,
        "body": base64.b64encode(body).decode(),
        "content_type": "application/json",
        "event_id": "evt_123",
        "event_type": "thing.happened",
        "attempt_number": 1,
        "timeout": 5.0,
    }
    return {**base, **fields}


def send_all(*specs: dict, timeout: float = 25) -> list[dict]:
    """Send each spec from one patched child process, concurrently; their outcomes."""
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(list(specs)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def read_request(conn: socket.socket, data: bytes) -> bytes | None:
    """Read one request (head, then a Content-Length body) after `data`, bytes already
    received; what came after it, or None if the client left first."""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return body[length:]


class RawServer(TCPServer):
    """A TCP server on 127.0.0.1 that reads one request per connection and then runs
    `answer(conn)`, for answers no well-behaved HTTP server gives."""

    def __init__(self, answer) -> None:
        self.answer = answer
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def handle(self, conn: socket.socket) -> None:
        with conn:
            if read_request(conn, b"") is None:
                return
            try:
                self.answer(conn)
            except OSError:
                pass  # the client hung up: that is the point of most of these


def test_a_closed_server_takes_no_more_connections():
    # Closed while its thread waits in accept(): the thread ends and the port is free, so no
    # accept() restarted later can take a connection meant for another test's listener.
    server = RawServer(lambda conn: conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n"))
    with socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.1 204")
    wait_for(lambda: server.connections == 1, what="the connection counted")
    server.close()
    assert not server._thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def drip(prefix: bytes, then: bytes, every: float = 0.1, for_seconds: float = 10.0):
    """Send `prefix` at once, then `then` one byte at a time."""

    def answer(conn: socket.socket) -> None:
        conn.sendall(prefix)
        stop = time.monotonic() + for_seconds
        for byte in then:
            if time.monotonic() > stop:
                return
            conn.sendall(bytes([byte]))
            time.sleep(every)

    return answer


@pytest.fixture
def raw_servers():
    made: list[RawServer] = []

    def make(answer) -> RawServer:
        made.append(RawServer(answer))
        return made[-1]

    yield make
    for server in made:
        server.close()


# -- outcomes ------------------------------------------------------------------------------


def test_outcomes_are_classified_by_what_the_destination_did(raw_servers):
    statuses = {"/ok": 200, "/accepted": 202, "/gone": 410, "/limit": 429, "/boom": 500}
    statuses["/unavailable"] = 503
    sink = Sink(lambda n, path, body: (statuses.get(path, 200), 3.0 if path == "/slow" else 0))
    redirect = raw_servers(
        lambda c: c.sendall(b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n")
    )
    refused = f"http://127.0.0.1:{free_port()}/hook"
    try:
        got = send_all(
            *(spec(sink.url + path) for path in statuses),
            spec(sink.url + "/slow", timeout=0.5),
            spec(refused),
            spec(redirect.url + "/moved"),
            spec("http://127.0.0.1:notaport/x"),
        )
    finally:
        sink.close()
    kinds = [(g["outcome"], g["response_status"]) for g in got]
    assert kinds == [
        ("success", 200),
        ("success", 202),
        ("http_4xx", 410),
        ("http_4xx", 429),
        ("http_5xx", 500),
        ("http_5xx", 503),
        ("timeout", None),
        ("network_error", None),
        ("http_4xx", 302),
        ("network_error", None),
    ]
    assert got[0]["error_message"] is None and got[0]["response_body"] == "ok"
    assert got[2]["error_message"] == "destination answered HTTP 410"
    assert got[4]["response_body"] == "failing on purpose"
    assert 450 <= got[6]["latency_ms"] < 2000, got[6]
    assert got[6]["error_message"] == "no complete answer within 0.5s"
    assert "ConnectionError" in got[7]["error_message"]
    assert "redirects are not followed" in got[8]["error_message"]
    assert "InvalidURL" in got[9]["error_message"]
    assert all(g["latency_ms"] >= 0 for g in got)
    # Each request reached the sink once: nothing is retried inside send(). (The one that
    # timed out may not have got through the sink's small listen backlog in time.)
    paths = [r["path"] for r in sink.requests]
    assert sorted(p for p in paths if p != "/slow") == sorted(statuses)
    assert paths.count("/slow") <= 1


@pytest.mark.parametrize("phase", ["status line", "headers", "body"])
def test_a_drip_feeding_destination_is_cut_off_at_the_timeout(raw_servers, phase):
    # A byte every 0.1 s never trips a per-read timeout; only a whole-attempt bound stops it.
    answers = {
        "status line": drip(b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        "headers": drip(b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"a" * 200 + b"\r\n"),
        "body": drip(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", b"z" * 5000),
    }
    server = raw_servers(answers[phase])
    started = time.monotonic()
    [got] = send_all(spec(server.url + "/hook", timeout=1.0))
    wall = time.monotonic() - started
    assert got["outcome"] == "timeout", got
    assert 950 <= got["latency_ms"] <= 1600, got
    assert wall < 5, "the child took far longer than the timeout"


def test_someone_elses_timeout_is_not_swallowed():
    sink = Sink(lambda n, path, body: (200, 3.0))
    try:
        [got] = send_all(spec(sink.url, timeout=10.0, outer_timeout=0.3))
    finally:
        sink.close()
    assert got == {"outcome": "outer timeout escaped send, as it should"}


def test_the_response_body_is_capped_and_nul_free(raw_servers):
    huge = (b"\x00\xff" + "é".encode() + b"x" * 96) * 2100  # ~210 KB, NULs, invalid UTF-8

    def big(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 400 Bad\r\nContent-Length: %d\r\n\r\n" % len(huge) + huge)

    utf8 = ("日本" * 40_000).encode()  # multi-byte characters across the cut

    def japanese(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(utf8) + utf8)

    a, b = raw_servers(big), raw_servers(japanese)
    got_big, got_utf8 = send_all(spec(a.url), spec(b.url))
    assert got_big["outcome"] == "http_4xx" and got_big["response_status"] == 400
    stored = got_big["response_body"]
    assert "\x00" not in stored
    assert len(stored.encode()) <= RESPONSE_BODY_LIMIT
    assert stored.startswith("\ufffd\ufffdéxxx")
    assert got_utf8["outcome"] == "success"
    text = got_utf8["response_body"]
    assert RESPONSE_BODY_LIMIT - 3 <= len(text.encode()) <= RESPONSE_BODY_LIMIT
    assert set(text) == {"日", "本"}, "the cut must fall between characters"


# -- what the destination receives ----------------------------------------------------------


def standard_webhooks_verify(secret: str, headers: dict, body: bytes) -> bool:
    """An independent Standard Webhooks verifier (not gethookd's signing code)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['Webhook-Id']}.{headers['Webhook-Timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    candidates = [s.split(",", 1)[1] for s in headers["Webhook-Signature"].split(" ")]
    return any(hmac.compare_digest(expected, c) for c in candidates)


def test_body_content_type_and_signature_reach_the_destination(sink):
    secret = crypto.new_signing_secret()
    body = b'{"amount":1299,"note":"caf\xc3\xa9"}\x00\xfe raw bytes'
    [ok, unsigned] = send_all(
        spec(sink.url + "/hook", body=body, signing_secret=secret, attempt_number=3),
        spec(sink.url + "/plain", body=b"x", content_type=None, event_type=None),
    )
    assert ok["outcome"] == unsigned["outcome"] == "success"
    signed = next(r for r in sink.requests if r["path"] == "/hook")
    plain = next(r for r in sink.requests if r["path"] == "/plain")
    assert signed["body"] == body
    h = signed["headers"]
    assert h["Content-Type"] == "application/json"
    assert h["Webhook-Id"] == h["X-GetHook-Event-Id"] == "evt_123"
    assert abs(int(h["Webhook-Timestamp"]) - time.time()) < 60
    assert h["X-GetHook-Attempt"] == "3" and h["X-GetHook-Event-Type"] == "thing.happened"
    assert h["User-Agent"].startswith("gethookd/")
    assert h["Webhook-Signature"].startswith("v1,")
    assert standard_webhooks_verify(secret, h, body)
    assert not standard_webhooks_verify(secret, h, body + b"tampered")
    assert plain["headers"]["Content-Type"] == "application/octet-stream"
    assert "Webhook-Signature" not in plain["headers"]
    assert "X-GetHook-Event-Type" not in plain["headers"]


def test_custom_headers_and_each_kind_of_auth_reach_the_destination(sink):
    custom = {"X-Tenant": "acme", "content-type": "text/evil", "Webhook-Id": "forged"}
    custom["Host"] = "evil.example"
    got = send_all(
        spec(
            sink.url + "/bearer",
            custom_headers=custom,
            auth_config={"type": "bearer", "token": "t0k"},
        ),
        spec(
            sink.url + "/api_key",
            auth_config={"type": "api_key", "header": "X-Hook-Key", "value": "k3y"},
        ),
        spec(sink.url + "/api_key_default", auth_config={"type": "api_key", "value": "d3f"}),
        spec(
            sink.url + "/basic",
            auth_config={"type": "basic", "username": "user", "password": "p:ss"},
        ),
    )
    assert {g["outcome"] for g in got} == {"success"}
    by_path = {r["path"]: r["headers"] for r in sink.requests}
    bearer = by_path["/bearer"]
    assert bearer["Authorization"] == "Bearer t0k"
    assert bearer["X-Tenant"] == "acme"
    assert bearer["Content-Type"] == "application/json"  # ours, not the custom one
    assert bearer["Webhook-Id"] == "evt_123"
    assert bearer["Host"] == sink.url.removeprefix("http://")
    assert by_path["/api_key"]["X-Hook-Key"] == "k3y"
    assert "Authorization" not in by_path["/api_key"]
    assert by_path["/api_key_default"]["X-API-Key"] == "d3f"
    assert by_path["/basic"]["Authorization"] == "Basic " + base64.b64encode(b"user:p:ss").decode()


def test_many_sends_share_the_time_budget_independently(sink):
    """Concurrent sends in one process: each one's deadline is its own."""
    slow = Sink(lambda n, path, body: (200, 2.0))
    try:
        got = send_all(
            *(spec(slow.url, timeout=0.4) for _ in range(5)),
            # (1.5 s: a connection the sink's small listen backlog delays is retried at 1 s)
            *(spec(sink.url, timeout=1.5) for _ in range(5)),
        )
    finally:
        slow.close()
    assert [g["outcome"] for g in got] == ["timeout"] * 5 + ["success"] * 5


# -- pure helpers --------------------------------------------------------------------------


def test_build_headers_signs_with_the_given_time():
    secret = crypto.new_signing_secret()
    req = Request("http://x", b"body", "text/plain", "evt_1", None, 1, 5.0, signing_secret=secret)
    headers = build_headers(req, now=1_700_000_000)
    assert headers["Webhook-Timestamp"] == "1700000000"
    assert headers["Webhook-Signature"] == crypto.sign_webhook(
        secret, "evt_1", 1_700_000_000, b"body"
    )
    assert standard_webhooks_verify(secret, headers, b"body")


def test_hop_by_hop_custom_headers_are_dropped():
    req = Request(
        "http://x",
        b"",
        None,
        "e",
        None,
        1,
        5.0,
        custom_headers={"Connection": "close", "Transfer-Encoding": "chunked", "X-Ok": 1},
    )
    headers = build_headers(req)
    assert headers["X-Ok"] == "1"
    assert not {"Connection", "Transfer-Encoding"} & set(headers)


@pytest.mark.parametrize(
    "text,limit,expected",
    [
        (None, 10, None),
        ("short", 10, "short"),
        ("a\x00b", 10, "a\ufffdb"),
        ("éééé", 5, "éé"),  # 8 bytes: cut at 5 falls inside the third é
        ("x" * 20, 10, "x" * 10),
    ],
)
def test_cap_text(text, limit, expected):
    assert cap_text(text, limit) == expected


def test_destination_urls_are_parsed_once_as_requests_read_them():
    from gethookd.deliver import InvalidURL, _parse_target

    got = _parse_target("https://u:p%40ss@B\u00fccher.example:8443/a b?x=1#frag")
    assert got.key == ("https", "xn--bcher-kva.example", 8443)
    assert got.request_uri == "/a%20b?x=1"  # percent-encoded, fragment dropped
    assert got.authorization == "Basic " + base64.b64encode(b"u:p@ss").decode()
    assert _parse_target("http://127.0.0.1").key == ("http", "127.0.0.1", 80)
    assert _parse_target("http://127.0.0.1").request_uri == "/"
    for bad in ("ftp://example.com/x", "http://127.0.0.1:notaport/x", "example.com/x"):
        with pytest.raises(InvalidURL):
            _parse_target(bad)


# -- the exchange on a connection ------------------------------------------------------------

SEQUENTIAL = r"""
from gevent import monkey
monkey.patch_all()
import ipaddress, json, sys, time
from gethookd import deliver, ssrf
session = deliver.new_session(ssrf.Policy((ipaddress.ip_network("127.0.0.0/8"),)), 10)
url, count = sys.argv[1], int(sys.argv[2])
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
req = deliver.Request(url=url, body=b"{}", content_type="application/json", event_id="evt_1",
                      event_type=None, attempt_number=1, timeout=5.0)
outcomes = []
for _ in range(count):
    outcomes.append(deliver.send(req, session).outcome)
    time.sleep(pause)
print(json.dumps(outcomes))
"""


class KeepAliveServer(TCPServer):
    """Answers every request on a connection until the client leaves; counts connections."""

    def __init__(self, answer: bytes, hang_up: bool = False) -> None:
        self.answer = answer
        self.hang_up = hang_up  # close each connection after its answer, unannounced
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                data = read_request(conn, data)
                if data is None:
                    return
                conn.sendall(self.answer)
                if self.hang_up or b"connection: close" in self.answer.lower():
                    return


@pytest.mark.parametrize(
    "answer, connections",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 12),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 12),
    ],
    ids=["keep-alive", "connection-close", "http-1.0"],
)
def test_a_connection_is_reused_only_when_the_answer_allows_it(answer, connections):
    server = KeepAliveServer(answer)
    try:
        run = [sys.executable, "-c", SEQUENTIAL, server.url, "12"]
        proc = subprocess.run(run, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == ["success"] * 12
        assert server.connections == connections
    finally:
        server.close()


def test_a_kept_connection_the_destination_dropped_is_not_reused():
    # Every answer allows keep-alive, then the server hangs up: each send must see that
    # its kept connection was dropped and open a new one, not fail on the dead one.
    server = KeepAliveServer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", hang_up=True)
    try:
        run = [sys.executable, "-c", SEQUENTIAL, server.url, "6", "0.1"]
        proc = subprocess.run(run, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == ["success"] * 6
        assert server.connections == 6
    finally:
        server.close()


def _answer_with(head: bytes, body: bytes):
    def answer(conn: socket.socket) -> None:
        conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    return answer


def test_compressed_answers_are_inflated_and_capped(raw_servers):
    import gzip
    import zlib

    text = b"accepted " * 20
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw_deflate = raw.compress(text) + raw.flush()
    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB of NULs in ~50 KB
    answers = [
        (b"200 OK", b"gzip", gzip.compress(text)),
        (b"200 OK", b"deflate", zlib.compress(text)),
        (b"500 x", b"deflate", raw_deflate),
        (b"400 x", b"gzip", bomb),
        (b"200 OK", b"gzip", b"not gzip"),
    ]
    servers = [
        raw_servers(_answer_with(b"HTTP/1.1 %s\r\nContent-Encoding: %s\r\n" % (st, enc), body))
        for st, enc, body in answers
    ]
    got = send_all(*(spec(s.url) for s in servers))
    assert [g["response_body"] for g in got[:3]] == [text.decode()] * 3
    assert got[2]["outcome"] == "http_5xx"
    assert got[3]["outcome"] == "http_4xx"
    # Never inflated whole: what is kept is at most the limit (NULs become U+FFFD).
    kept = got[3]["response_body"]
    assert set(kept) == {"\ufffd"} and len(kept.encode()) <= RESPONSE_BODY_LIMIT
    assert got[4]["outcome"] == "network_error" and "error" in got[4]["error_message"].lower()


@pytest.mark.parametrize(
    "answer, status, body",
    [
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\ncreated",
            201,
            "created",
        ),
        (b"HTTP/1.1 202 Accepted\r\n\r\nuntil the end", 202, "until the end"),
    ],
    ids=["interim answers skipped", "no length: until the connection ends"],
)
def test_the_final_answer_counts_however_it_is_framed(raw_servers, answer, status, body):
    server = raw_servers(lambda c: c.sendall(answer))
    [got] = send_all(spec(server.url))
    assert (got["outcome"], got["response_status"], got["response_body"]) == (
        "success",
        status,
        body,
    )


def test_an_answer_cut_short_or_not_http_is_a_network_error(raw_servers):
    short = raw_servers(lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    junk = raw_servers(lambda c: c.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))
    silent = raw_servers(lambda c: None)  # reads the request, closes without a word
    got = send_all(spec(short.url), spec(junk.url), spec(silent.url))
    assert [g["outcome"] for g in got] == ["network_error"] * 3, got
    assert all(g["response_status"] is None for g in got)


def test_a_header_value_that_would_inject_a_header_is_refused(sink):
    [got] = send_all(spec(sink.url, custom_headers={"X-Note": "a\r\nX-Injected: 1"}))
    assert got["outcome"] == "network_error" and "Invalid header" in got["error_message"]
    assert sink.requests == []
