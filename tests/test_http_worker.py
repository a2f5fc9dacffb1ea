"""gethookd's gunicorn worker (httptools) over real sockets: the HTTP/1.1 it must keep.

A real gunicorn serves tests/wsgi_probe.py with the worker; raw sockets send what clients
and attackers send. The rest of the suite runs the whole API behind this worker too.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from helpers import free_port, wait_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def start_gunicorn(log: Path, keepalive: int) -> tuple[subprocess.Popen, int]:
    """gunicorn with one HttpWorker serving tests/wsgi_probe.py, once it accepts."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}"),
        *("-k", "gethookd.process.http_worker.HttpWorker", "--keep-alive", str(keepalive)),
        *("--limit-request-fields", "20", "--limit-request-line", "200"),
        *("--graceful-timeout", "20", "--chdir", str(HERE), "wsgi_probe:app"),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            assert proc.poll() is None, log.read_text()
            return False

    wait_for(up, what="gunicorn with the httptools worker")
    return proc, port


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("worker") / "gunicorn.log"
    proc, port = start_gunicorn(log, keepalive=2)
    yield {"port": port, "log": log}
    proc.terminate()
    proc.wait(timeout=30)


class Client:
    """A raw connection that reads answers one at a time, however they are framed."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            assert self._fill(), "connection closed inside an answer"
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            assert self._fill(), "connection closed inside an answer's head"
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def answer(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        status = int(self._line().split()[1])
        headers = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if head_only or status == 100:
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._line(), 16):
                body += self._take(size)
                self._take(2)
            self._line()
            return status, headers, body
        return status, headers, self._take(int(headers.get("content-length", 0)))

    def closed(self) -> bool:
        """Whether the server closed its end (after whatever it still had to send)."""
        try:
            while self._fill():
                pass
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(server):
    c = Client(server["port"])
    yield c
    c.close()


def post(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: test", f"Content-Length: {len(body)}"]
    return ("\r\n".join([*head, *headers]) + "\r\n\r\n").encode() + body


def test_keep_alive_serves_several_requests_on_one_connection(client):
    for n in range(3):
        client.send(post(f"/echo/{n}", b"body %d" % n))
        status, headers, body = client.answer()
        seen = json.loads(body)
        assert (status, seen["path"], seen["body"]) == (200, f"/echo/{n}", f"body {n}")
        assert "connection" not in headers
        assert headers["date"].endswith("GMT")
    assert seen["remote"] == "127.0.0.1"
    assert seen["protocol"] == "HTTP/1.1"
    assert seen["headers"]["CONTENT_LENGTH"] == "6"


def test_pipelined_requests_are_answered_in_order(client):
    client.send(post("/first", b"1") + post("/second", b"22") + post("/third", b"333"))
    paths = [json.loads(client.answer()[2])["path"] for _ in range(3)]
    assert paths == ["/first", "/second", "/third"]


def test_http_1_0_closes_unless_asked_to_keep_alive(server):
    c = Client(server["port"])
    c.send(post("/old", b"x", version="1.0"))
    status, headers, body = c.answer()
    assert status == 200 and headers["connection"] == "close"
    assert json.loads(body)["protocol"] == "HTTP/1.0"
    assert c.closed()
    c = Client(server["port"])
    c.send(post("/old", b"x", "Connection: keep-alive", version="1.0"))
    assert c.answer()[1]["connection"] == "keep-alive"
    c.send(post("/again", b"y", "Connection: keep-alive", version="1.0"))
    assert json.loads(c.answer()[2])["path"] == "/again"
    c.close()


def test_a_chunked_body_reaches_the_app_whole(client):
    client.send(
        b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    time.sleep(0.2)  # the rest arrives later: the app's read waits for it
    client.send(b"6\r\n world\r\n0\r\n\r\n")
    assert json.loads(client.answer()[2])["body"] == "hello world"


def test_the_body_is_read_line_by_line_when_the_app_iterates_it(client):
    client.send(post("/lines", b"one\ntwo\nthree"))
    assert json.loads(client.answer()[2])["lines"] == ["one\n", "two\n", "three"]


def test_expect_100_continue_is_answered_when_the_app_reads(client):
    body = b"x" * 5000
    client.send(post("/big", body, "Expect: 100-continue")[: -len(body)])
    status, _, _ = client.answer()
    assert status == 100  # the client may send the body now
    client.send(body)
    status, _, answer = client.answer()
    assert status == 200 and json.loads(answer)["body"] == body.decode()


def test_an_unread_body_closes_the_connection_after_the_answer(client):
    # The app answers 413 without reading; the answer still arrives although the client
    # is in the middle of sending, and the connection is not reused.
    head = post("/reject", b"").replace(b"Length: 0", b"Length: 9999999")
    client.send(head + b"x" * 100_000)
    status, headers, body = client.answer()
    assert (status, headers["connection"]) == (413, "close")
    assert json.loads(body) == {"error": "too large"}
    assert client.closed()


def test_a_malformed_request_gets_a_json_400_and_a_closed_connection(client):
    client.send(b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
    status, headers, body = client.answer()
    assert status == 400 and headers["connection"] == "close"
    assert json.loads(body)["error"].startswith("malformed HTTP request")
    assert client.closed()


def test_garbage_instead_of_http_gets_a_400(client):
    client.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
    status, _, body = client.answer()
    assert status == 400 and "error" in json.loads(body)


def test_bad_chunking_inside_a_body_is_a_400_not_a_500(client, server):
    client.send(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n")
    status, _, body = client.answer()
    assert status == 400 and json.loads(body)["error"].startswith("malformed HTTP request")
    assert client.closed()


def test_header_limits_are_kept(server):
    c = Client(server["port"])
    many = [f"X-H{n}: v" for n in range(25)]
    c.send(post("/h", b"", *many))
    status, _, body = c.answer()
    assert status == 431 and "more than 20 header fields" in json.loads(body)["error"]
    c = Client(server["port"])
    c.send(post("/" + "a" * 300, b""))
    assert c.answer()[0] == 414
    c = Client(server["port"])
    c.send(b"POST /h HTTP/1.1\r\nX-Endless: " + b"v" * 2_000_000)
    assert c.answer()[0] == 431


def test_headers_paths_and_queries_reach_the_app_as_wsgi_says(client):
    client.send(
        post(
            "/a%20b/c?x=1&y=%20",
            b"",
            "X-Custom: one",
            "X-Custom: two",
            "X_Forwarded_For: 10.0.0.1",
            "Content-Type: application/json",
        )
    )
    seen = json.loads(client.answer()[2])
    assert seen["path"] == "/a b/c" and seen["query"] == "x=1&y=%20"
    assert seen["headers"]["HTTP_X_CUSTOM"] == "one,two"
    assert seen["headers"]["CONTENT_TYPE"] == "application/json"
    assert "HTTP_X_FORWARDED_FOR" not in seen["headers"]  # underscores would spoof dashes


def test_a_streamed_answer_is_chunked_and_head_has_no_body(server):
    answer = requests.get(f"http://127.0.0.1:{server['port']}/stream", timeout=5)
    assert answer.text == "part 0\npart 1\npart 2\n"
    assert answer.headers["Transfer-Encoding"] == "chunked"
    c = Client(server["port"])
    c.send(b"HEAD /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, _ = c.answer(head_only=True)
    assert status == 200 and int(headers["content-length"]) > 0
    c.send(post("/after-head", b""))  # nothing of a body came between: the next is intact
    assert json.loads(c.answer()[2])["path"] == "/after-head"
    c.close()


def test_an_app_that_fails_gets_a_500_and_the_worker_lives_on(client, server):
    client.send(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
    status, _, body = client.answer()
    assert status == 500 and json.loads(body) == {"error": "internal error"}
    assert "the app failed" in server["log"].read_text()
    answer = requests.post(f"http://127.0.0.1:{server['port']}/ok", data=b"fine", timeout=5)
    assert answer.json()["body"] == "fine"


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_setting(client):
    client.send(post("/one", b""))
    assert client.answer()[0] == 200
    started = time.monotonic()
    assert client.closed()
    assert 1.5 < time.monotonic() - started < 5  # --keepalive 2


def test_a_client_that_leaves_mid_body_costs_nothing(server):
    c = Client(server["port"])
    c.send(post("/partial", b"x" * 10)[:-5])
    c.close()
    answer = requests.post(f"http://127.0.0.1:{server['port']}/ok", data=b"next", timeout=5)
    assert answer.json()["body"] == "next"


def test_a_header_that_would_split_the_answer_is_refused(client, server):
    client.send(b"GET /inject HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, body = client.answer()
    assert status == 500 and "set-cookie" not in headers
    assert json.loads(body) == {"error": "internal error"}
    assert "a line break" in server["log"].read_text()


def test_a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_keepalive_bound(client):
    client.send(b"POST /slow HTTP/1.1\r\nX-Slow: ")
    started = time.monotonic()
    for _ in range(40):  # a byte every 0.25 s, until the server answers
        if select.select([client.sock], [], [], 0.25)[0]:
            break
        client.send(b"a")
    status, headers, body = client.answer()
    assert (status, headers["connection"]) == (408, "close")
    assert "the request head took over 2s" in json.loads(body)["error"]
    assert 1.5 < time.monotonic() - started < 4.5  # --keep-alive 2


def test_a_stopping_worker_finishes_the_request_in_flight_and_closes_idle_connections(tmp_path):
    proc, port = start_gunicorn(tmp_path / "gunicorn.log", keepalive=10)
    try:
        busy, idle = Client(port), Client(port)
        for c in (busy, idle):
            c.send(post("/before", b""))
            assert c.answer()[0] == 200
        busy.send(post("/slow", b"still served"))  # the app takes a second over it
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # graceful: the arbiter stops its worker
        status, headers, body = busy.answer()
        assert json.loads(body)["body"] == "still served"
        assert headers["connection"] == "close"  # and no further request on it
        assert busy.closed()
        started = time.monotonic()
        assert idle.closed()  # an idle connection is not kept for its 10 s keepalive
        assert time.monotonic() - started < 3
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
