"""The API's gunicorn worker: gevent greenlets, each HTTP/1.1 request parsed by httptools.

gunicorn's own gevent worker parses requests and builds their WSGI environ in Python; under
ingest load that was the larger part of an API process's CPU, and the same falcon app
answered 3x more requests behind this worker (bench/RESULTS.md). Everything else stays
gunicorn's: this is a GeventWorker (arbiter, signals, heartbeats, graceful stop,
max_requests); only the loop that serves one connection is replaced.

What that loop holds to: keep-alive (HTTP/1.1, or 1.0 on request) with gunicorn's
`keepalive` idle timeout; pipelined requests answered in order; a request body streamed to
the app as it reads (never buffered whole), with `Expect: 100-continue` answered when the
app first reads; gunicorn's request line and header field limits; a malformed request
answered with a JSON error and the connection closed; a body the app left unread closes
the connection after the answer (lingering, so the client still reads that answer).
"""

from __future__ import annotations

import email.utils
import itertools
import json
import socket
import sys
import time
from collections import deque
from typing import Any
from urllib.parse import unquote_to_bytes

import falcon
import gevent
import gevent.select
import httptools
from gunicorn.workers.ggevent import GeventWorker

RECV_SIZE = 64 * 1024
READ_TIMEOUT = 30.0  # seconds a request body, or the sending of an answer, may stall
LINGER_TIMEOUT = 2.0  # seconds an unread body is drained after the answer, before closing
LINGER_BYTES = 1024 * 1024
IDLE_CHECK = 1.0  # an idle keep-alive connection notices a stopping worker this often
NO_BODY_STATUSES = ("1", "204", "304")  # status prefixes whose answers carry no body


class BadRequest(Exception):
    """A request the app never sees: answered here, then the connection is closed."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyError(falcon.HTTPBadRequest):
    """The body could not be read to its end (malformed chunking, or the client left).

    Raised from wsgi.input into the app: falcon answers it as the 400 it is, instead of a
    500 for an unexpected error; the connection is closed after that answer.
    """

    def __init__(self, message: str) -> None:
        super().__init__(description=message)


class _Message:
    """One request as the parser has seen it so far."""

    __slots__ = (
        "url",
        "headers",
        "method",
        "version",
        "keep_alive",
        "body",
        "complete",
        "expect_continue",
    )

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: deque[bytes] = deque()
        self.complete = False
        self.keep_alive = False
        self.expect_continue = False  # a 100 Continue is owed before the body is read


class _Connection:
    """One client connection: the parser's callbacks, and the reads that drive them."""

    def __init__(self, sock: socket.socket, cfg: Any) -> None:
        self.sock = sock
        self.parser = httptools.HttpRequestParser(self)
        self.ready: deque[_Message] = deque()  # headers complete, not yet answered
        self.parsing: _Message | None = None
        self.head_bytes = 0  # bytes read for the request head being parsed
        self.in_head = False
        self.upgraded = False  # the parser stops at an Upgrade: nothing after it is read
        self.eof = False
        self.line_limit = cfg.limit_request_line or sys.maxsize
        self.fields_limit = cfg.limit_request_fields or sys.maxsize
        self.field_limit = cfg.limit_request_field_size or sys.maxsize
        # Head of one request at most: a request line and every field at their limits.
        self.head_limit = min(self.line_limit + self.fields_limit * (self.field_limit + 4), 2**20)

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.parsing = _Message()
        self.in_head = True

    def on_url(self, url: bytes) -> None:
        message = self.parsing
        message.url += url
        if len(message.url) > self.line_limit:
            raise BadRequest("414 URI Too Long", f"request line over {self.line_limit} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.parsing.headers
        if len(headers) >= self.fields_limit:
            raise BadRequest(
                "431 Request Header Fields Too Large",
                f"more than {self.fields_limit} header fields",
            )
        if len(name) + len(value) + 2 > self.field_limit:
            raise BadRequest(
                "431 Request Header Fields Too Large",
                f"header field {name[:64].decode('latin-1')!r} over {self.field_limit} bytes",
            )
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        message, parser = self.parsing, self.parser
        message.method = parser.get_method().decode("latin-1")
        message.version = parser.get_http_version()
        message.keep_alive = parser.should_keep_alive()
        self.head_bytes = 0
        self.in_head = False
        self.ready.append(message)

    def on_body(self, body: bytes) -> None:
        self.parsing.body.append(body)

    def on_message_complete(self) -> None:
        self.parsing.complete = True
        self.parsing = None

    # -- reading ------------------------------------------------------------------------

    def feed(self, timeout: float) -> None:
        """One read from the client, parsed; TimeoutError if nothing came in time."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(RECV_SIZE)
        if not data:
            self.eof = True
            return
        in_head = self.parsing is None or self.in_head
        if in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.upgraded = True  # not switched to: the answer closes the connection
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, BadRequest):
                raise exc.__context__ from None
            raise
        except httptools.HttpParserError as exc:
            raise BadRequest("400 Bad Request", f"malformed HTTP request: {exc}") from None
        if in_head and (self.parsing is None or self.in_head) and self.head_bytes > self.head_limit:
            # llhttp itself sets no limit on a head that never ends.
            raise BadRequest(
                "431 Request Header Fields Too Large", f"request head over {self.head_limit} bytes"
            )

    def next_message(self, keepalive: float, alive: Any, first: bool) -> _Message | None:
        """The next request whose head is complete; None when the client is done, stayed
        idle past `keepalive` seconds, or the worker is stopping between requests (a new
        connection is always waited on: its client connected to send something).

        As in gunicorn's own gevent worker, the wait and the head share the `keepalive`
        bound: a client trickling its head a byte at a time cannot hold a connection.
        """
        deadline = time.monotonic() + keepalive
        while not self.ready:
            if self.eof or self.upgraded:
                if self.parsing is not None:
                    raise BadRequest("400 Bad Request", "the request ended before its head")
                return None
            left = deadline - time.monotonic()
            if self.parsing is not None or self.head_bytes:  # a request has started
                try:
                    if left <= 0:
                        raise TimeoutError
                    self.feed(left)
                except TimeoutError:
                    raise BadRequest(
                        "408 Request Timeout", f"the request head took over {keepalive:g}s"
                    ) from None
                continue
            if left <= 0:
                return None
            if not first and not alive():
                # Stopping: serve what the client already sent, else close while idle.
                if not gevent.select.select([self.sock], [], [], 0)[0]:
                    return None
                left = READ_TIMEOUT
            try:
                self.feed(min(IDLE_CHECK, left))
            except TimeoutError:
                continue
        return self.ready.popleft()

    def read_body(self, message: _Message) -> bytes:
        """The next piece of this request's body; b"" once it is all read."""
        while not message.body:
            if message.complete:
                return b""
            if self.eof or (self.upgraded and self.parsing is message):
                raise BodyError("the request body ended early")
            if message.expect_continue:
                message.expect_continue = False
                self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                self.feed(READ_TIMEOUT)
            except BadRequest as exc:
                raise BodyError(exc.message) from None
            except TimeoutError:
                raise BodyError(f"no request body data for {READ_TIMEOUT:g}s") from None
            except OSError as exc:
                raise BodyError(f"the request body could not be read: {exc}") from None
        return message.body.popleft()

    def linger(self) -> None:
        """Close after an answer while the client may still be sending: stop writing, read
        what it sends for a moment, then close (an immediate close would answer its unread
        bytes with a reset, which can destroy our answer before the client reads it)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline, drained = time.monotonic() + LINGER_TIMEOUT, 0
            while drained < LINGER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass


class Input:
    """wsgi.input: the request body, read from the connection as the app asks for it."""

    def __init__(self, conn: _Connection, message: _Message) -> None:
        self._conn = conn
        self._message = message
        self._buffer = b""

    def _more(self) -> bytes:
        return self._conn.read_body(self._message)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buffer]
            self._buffer = b""
            while chunk := self._more():
                parts.append(chunk)
            return b"".join(parts)
        while len(self._buffer) < size:
            chunk = self._more()
            if not chunk:
                break
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        while b"\n" not in self._buffer and (size is None or size < 0 or len(self._buffer) < size):
            chunk = self._more()
            if not chunk:
                break
            self._buffer += chunk
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        if size is not None and size >= 0:
            end = min(end, size)
        line, self._buffer = self._buffer[:end], self._buffer[end:]
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        while line := self.readline():
            yield line


# -- the environ and the answer ----------------------------------------------------------

_ENV_KEYS: dict[bytes, str | None] = {}  # header name -> environ key (None: dropped)


def _env_key(name: bytes) -> str | None:
    key = _ENV_KEYS.get(name, "")
    if key != "":
        return key
    text = name.decode("latin-1").upper()
    if "_" in text:
        key = None  # X_Forwarded_For would pose as X-Forwarded-For: dropped, as gunicorn does
    elif text in ("CONTENT-TYPE", "CONTENT-LENGTH"):
        key = text.replace("-", "_")
    else:
        key = "HTTP_" + text.replace("-", "_")
    if len(_ENV_KEYS) < 4096:
        _ENV_KEYS[name] = key
    return key


def environ(base: dict, message: _Message) -> dict:
    """The request's WSGI environ, all but wsgi.input."""
    env = dict(base)
    url = message.url
    if url[:1] == b"/":
        path, _, query = url.partition(b"?")
        path = path.partition(b"#")[0]
        query = query.partition(b"#")[0]
    else:  # absolute form (a proxy's), or "*"
        try:
            parsed = httptools.parse_url(url)
            path, query = parsed.path or b"/", parsed.query or b""
        except httptools.HttpParserInvalidURLError:
            path, query = url, b""
    env["REQUEST_METHOD"] = message.method
    env["RAW_URI"] = url.decode("latin-1")
    env["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
    env["QUERY_STRING"] = query.decode("latin-1")
    env["SERVER_PROTOCOL"] = "HTTP/" + message.version
    for name, value in message.headers:
        key = _env_key(name)
        if key is None:
            continue
        text = value.decode("latin-1")
        if key in env and key.startswith("HTTP_"):
            env[key] += "," + text
        else:
            env[key] = text
    return env


_date = [0, ""]


def http_date() -> str:
    now = int(time.time())
    if now != _date[0]:
        _date[:] = [now, email.utils.formatdate(now, usegmt=True)]
    return _date[1]


def head(status: str, headers: list[tuple[str, str]], extra: list[str]) -> bytes:
    fields = "".join([f"{name}: {value}\r\n" for name, value in headers])
    # One CR and one LF per field, or a value would smuggle in a header of its own.
    if fields.count("\n") != len(headers) or fields.count("\r") != len(headers):
        raise ValueError("a response header holds a line break")
    return f"HTTP/1.1 {status}\r\n{fields}{''.join(extra)}\r\n".encode("latin-1")


def error_answer(status: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    return head(status, headers, [f"Date: {http_date()}\r\n", "Connection: close\r\n"]) + body


class HttpWorker(GeventWorker):
    """gunicorn's gevent worker, serving each connection with the httptools loop above."""

    def init_process(self) -> None:
        self._bases: dict = {}
        super().init_process()

    def handle(self, listener: socket.socket, client: socket.socket, addr: Any) -> None:
        if self.cfg.is_ssl:  # TLS in gunicorn itself: its own loop knows the handshake
            return super().handle(listener, client, addr)
        conn = _Connection(client, self.cfg)
        base = self._base(listener, addr)
        first = True
        try:
            while True:
                message = conn.next_message(self.cfg.keepalive, lambda: self.alive, first)
                first = False
                if message is None:
                    break
                keep = self.serve(conn, message, base)
                self.nr += 1
                if self.nr >= self.max_requests:
                    if self.alive:
                        self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                if not keep:
                    break
        except BodyError:
            pass  # the app was told (a 400); the connection cannot go on
        except BadRequest as exc:
            try:
                client.sendall(error_answer(exc.status, exc.message))
                conn.linger()
            except OSError:
                pass
        except (OSError, gevent.GreenletExit):
            pass  # the client went away or stalled; or the worker is being stopped
        except Exception:
            self.log.exception("error serving a connection")
        finally:
            client.close()

    def _base(self, listener: socket.socket, addr: Any) -> dict:
        """The environ keys one connection's requests share."""
        key = listener.fileno()
        server = self._bases.get(key)
        if server is None:
            name = listener.getsockname()
            server = self._bases[key] = {
                "SCRIPT_NAME": "",
                "SERVER_NAME": str(name[0]) if isinstance(name, tuple) else str(name),
                "SERVER_PORT": str(name[1]) if isinstance(name, tuple) else "",
                "SERVER_SOFTWARE": "gethookd",
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": True,
                "wsgi.multiprocess": self.cfg.workers > 1,
                "wsgi.run_once": False,
                "wsgi.input_terminated": True,
            }
        base = dict(server)
        if isinstance(addr, tuple):
            base["REMOTE_ADDR"], base["REMOTE_PORT"] = str(addr[0]), str(addr[1])
        else:
            base["REMOTE_ADDR"] = str(addr or "")
        return base

    def serve(self, conn: _Connection, message: _Message, base: dict) -> bool:
        """Answer one request; whether the connection may carry another."""
        env = environ(base, message)
        if message.version == "1.1" and "HTTP_EXPECT" in env:
            message.expect_continue = env["HTTP_EXPECT"].strip().lower() == "100-continue"
        env["wsgi.input"] = Input(conn, message)
        started: list = []
        written: list[bytes] = []

        def start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            if exc_info is not None and started and started[0] is None:
                raise exc_info[1].with_traceback(exc_info[2])  # the head is already out
            started[:] = [status, headers]
            return written.append

        try:
            result = self.wsgi(env, start_response)
        except BodyError:
            raise
        except Exception:
            self.log.exception("unhandled error in the app on %s", env.get("PATH_INFO"))
            conn.sock.sendall(error_answer("500 Internal Server Error", "internal error"))
            return False
        try:
            return self._answer(conn, message, started, written, result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _answer(
        self, conn: _Connection, message: _Message, started: list, written: list, result: Any
    ) -> bool:
        if isinstance(result, (list, tuple)):
            chunks, stream = written + list(result), None
        else:
            stream = iter(result)
            first = next(stream, None)  # a WSGI app may call start_response lazily
            chunks = written + ([first] if first is not None else [])
        status, headers = started
        started[0] = None  # the head goes out now: start_response may no longer change it
        keep = message.keep_alive and self.alive and message.complete and not conn.upgraded
        length = None
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                length = value
            elif lower == "connection" and "close" in value.lower():
                keep = False
        no_body = message.method == "HEAD" or status.startswith(NO_BODY_STATUSES)
        extra = [f"Date: {http_date()}\r\n"]
        chunked = False
        if stream is None and length is None and not no_body:
            extra.append(f"Content-Length: {sum(map(len, chunks))}\r\n")
        elif stream is not None and length is None and not no_body:
            if message.version == "1.1":
                extra.append("Transfer-Encoding: chunked\r\n")
                chunked = True
            else:
                keep = False  # the end of the body is the end of the connection
        if not keep:
            extra.append("Connection: close\r\n")
        elif message.version == "1.0":
            extra.append("Connection: keep-alive\r\n")
        try:
            out = head(status, headers, extra)
        except ValueError as exc:
            self.log.error("the app's answer to %s was refused: %s", message.method, exc)
            conn.sock.sendall(error_answer("500 Internal Server Error", "internal error"))
            return False
        sock = conn.sock
        sock.settimeout(READ_TIMEOUT)
        if no_body:
            sock.sendall(out)
        elif chunked:
            sock.sendall(out)
            for chunk in itertools.chain(chunks, stream):
                if chunk:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(out + b"".join(chunks))
            for chunk in stream or ():
                sock.sendall(chunk)
        if not keep and not message.complete:
            conn.linger()
        return keep
