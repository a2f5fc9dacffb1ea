"""Build, sign and send one webhook request; the result is a value, never an exception.

No database here: the worker records what this returns. The whole attempt (connect,
send, headers, body) is bounded by one deadline, enforced by a gevent.Timeout; that
needs a gevent-patched process, as every delivery process is.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import os
import select
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import unquote

import gevent
import httptools
from gevent.monkey import get_original
from requests.certs import where as default_ca_bundle
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
)
from urllib3.util import parse_url

from gethookd import __version__, ssrf
from gethookd.crypto import sign_webhooks

RESPONSE_BODY_LIMIT = 64 * 1024  # bytes of UTF-8 text kept from a destination's answer
ERROR_MESSAGE_LIMIT = 1000
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}
OUTCOMES = ("success", "timeout", "network_error", "http_4xx", "http_5xx", "cancelled")


class Request(NamedTuple):
    """One attempt to send (a named tuple: made per delivery, see queue.Job)."""

    url: str
    body: bytes
    content_type: str | None
    event_id: str
    event_type: str | None
    attempt_number: int
    timeout: float
    signing_secret: str | None = None  # the one secret (kept while callers move on)
    custom_headers: dict | None = None
    auth_config: dict | None = None
    # Every secret to sign with, current first: during a rotation's grace period the
    # previous one too, so receivers that know either secret accept the webhook.
    signing_secrets: tuple[str, ...] = ()

    def secrets(self) -> tuple[str, ...]:
        if self.signing_secrets:
            return tuple(s for s in self.signing_secrets if s)
        return (self.signing_secret,) if self.signing_secret else ()


@dataclass(frozen=True)
class Outcome:
    outcome: str  # one of OUTCOMES
    response_status: int | None
    response_body: str | None
    error_message: str | None
    latency_ms: int
    # Seconds the destination asked us to wait (Retry-After on a 429 or 503), else None.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "success"

    @property
    def gone(self) -> bool:
        """410 Gone: the destination says it will never take these webhooks again."""
        return self.response_status == 410


def cap_text(text: str | None, limit: int = RESPONSE_BODY_LIMIT) -> str | None:
    """At most `limit` bytes of UTF-8, cut on a character boundary, without NUL (which a
    PostgreSQL text column cannot hold)."""
    if text is None:
        return None
    text = text.replace("\x00", "\ufffd")
    if len(text) * 4 <= limit:  # cannot be over: skip the encoding
        return text
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def build_headers(req: Request, now: float | None = None) -> dict[str, str]:
    """Custom headers first, then auth, then ours (which nothing may override)."""
    headers: dict[str, str] = {}
    for name, value in (req.custom_headers or {}).items():
        if str(name).lower() not in _HOP_BY_HOP:
            headers[str(name)] = str(value)
    auth = req.auth_config or {}
    if auth.get("type") == "bearer" and auth.get("token"):
        headers["Authorization"] = f"Bearer {auth['token']}"
    elif auth.get("type") == "api_key" and auth.get("value"):
        headers[auth.get("header") or "X-API-Key"] = str(auth["value"])
    elif auth.get("type") == "basic" and auth.get("username") is not None:
        creds = f"{auth['username']}:{auth.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(creds).decode()
    # Ours replace any custom header of the same name, whatever its case.
    ours = {
        "Content-Type": req.content_type or "application/octet-stream",
        "User-Agent": f"gethookd/{__version__}",
    }
    timestamp = int(now if now is not None else time.time())
    ours["Webhook-Id"] = req.event_id
    ours["Webhook-Timestamp"] = str(timestamp)
    ours["X-GetHook-Event-Id"] = req.event_id
    ours["X-GetHook-Attempt"] = str(req.attempt_number)
    if req.event_type:
        ours["X-GetHook-Event-Type"] = req.event_type
    secrets = req.secrets()
    if secrets:
        ours["Webhook-Signature"] = sign_webhooks(secrets, req.event_id, timestamp, req.body)
    taken = {name.lower() for name in ours}
    headers = {k: v for k, v in headers.items() if k.lower() not in taken}
    headers.update(ours)
    return headers


_poll = get_original("select", "poll")  # the kernel's, even in a gevent-patched process


class _KeptConnection:
    """Mixed into the pooled connections."""

    sock: Any

    @property
    def is_connected(self) -> bool:
        """Asked before a kept connection is reused: readable (EOF, or bytes nobody asked
        for) means the peer dropped it. urllib3 asks through select.poll, which gevent
        emulates with watchers made for each call (22 µs a delivery); the kernel's poll
        with a zero timeout never blocks, and costs 1 µs."""
        if self.sock is None or self.sock.fileno() < 0:
            return False
        poller = _poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        return not poller.poll(0)


class Sender:
    """The delivery client. urllib3 keeps the connections: one keep-alive pool per
    destination host, every connection resolved through the SSRF policy and pinned to an
    address it checked, while TLS still verifies (and sends as SNI) the URL's host name.
    The exchange on a connection is ours: the request written in one send, the answer
    parsed by httptools (llhttp, in C); urllib3's and http.client's per-request Python was
    most of a delivery's CPU. No cookies, no proxies, nothing from the environment but a
    CA bundle (REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE), no redirects, no retries."""

    def __init__(self, policy: ssrf.Policy, pool_maxsize: int = 10, max_hosts: int = 1000) -> None:
        self.policy = policy
        self.pool_maxsize = pool_maxsize
        self.max_hosts = max_hosts
        # True (the certifi bundle, as requests uses), a CA file or directory, or False.
        self._verify: bool | str = _env_ca_bundle() or True
        self._pool_classes = ssrf.pinned_pool_classes(policy, (_KeptConnection,))
        self._pools: OrderedDict[tuple, HTTPConnectionPool] = OrderedDict()
        self._targets: dict[str, _Target] = {}  # url -> its parsed form, parsed once

    @property
    def verify(self) -> bool | str:
        return self._verify

    @verify.setter
    def verify(self, value: bool | str) -> None:
        """Changing the trust closes every pool: no connection verified otherwise is reused."""
        self._verify = value
        self.close()

    def close(self) -> None:
        while self._pools:
            self._pools.popitem(last=False)[1].close()

    def target(self, url: str) -> _Target:
        """The URL parsed once (parsing is a regex walk; a destination's URL rarely changes)."""
        found = self._targets.get(url)
        if found is None:
            if len(self._targets) >= 10 * self.max_hosts:
                self._targets.clear()
            found = self._targets[url] = _parse_target(url)
        return found

    def pool(self, target: _Target) -> HTTPConnectionPool:
        pool = self._pools.get(target.key)
        if pool is not None:
            return pool
        scheme, host, port = target.key
        kwargs: dict = {"maxsize": self.pool_maxsize, "block": False, "retries": False}
        if scheme == "https":
            verify = self._verify
            if verify is False:
                kwargs["cert_reqs"] = "CERT_NONE"
            else:
                bundle = default_ca_bundle() if verify is True else str(verify)
                kwargs["cert_reqs"] = "CERT_REQUIRED"
                kwargs["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
        pool = self._pool_classes[scheme](host, port, **kwargs)
        self._pools[target.key] = pool
        if len(self._pools) > self.max_hosts:
            self._pools.popitem(last=False)[1].close()  # the longest-created one goes
        return pool

    def exchange(
        self, target: _Target, headers: dict[str, str], body: bytes, timeout: float
    ) -> tuple[int, str | None, str]:
        """POST on a pooled connection: the answer's status, Retry-After and body (at most
        RESPONSE_BODY_LIMIT bytes, decoded). A connection goes back to the pool only after
        an answer read to its end that allows keep-alive; any other is closed. `timeout`
        bounds the connect only: the caller bounds the whole exchange (send's deadline)."""
        head = _request_head(target, headers, len(body))
        pool = self.pool(target)
        conn = pool._get_conn()  # a kept connection (checked not dropped), or a new one
        reusable = False
        try:
            if conn.sock is None:
                conn.timeout = timeout
                conn.connect()  # the SSRF-pinned address, TLS verified against the URL's name
                # No deadline per socket operation: each one that waited armed a timer of
                # its own beside send()'s, which bounds the whole exchange.
                conn.sock.settimeout(None)
            sock = conn.sock
            sock.sendall(head + body)
            answer = _Answer()
            parser = answer.parser = httptools.HttpResponseParser(answer)
            while not answer.done:
                data = sock.recv(65536)
                if not data:
                    if answer.delimited_by_close():
                        break  # no length, not chunked: the body was everything until EOF
                    raise ProtocolError(
                        "Connection aborted.", "the destination closed the connection early"
                    )
                try:
                    parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    break  # 101 Switching Protocols: the answer is its head; never reused
                except httptools.HttpParserError as exc:
                    raise ProtocolError("invalid HTTP answer", exc) from None
                if answer.full:
                    break  # enough kept; the rest is not read
            reusable = answer.done and not answer.full and answer.keep_alive
            return answer.status, answer.retry_after, answer.text()
        finally:
            if not reusable:
                conn.close()
            pool._put_conn(conn)


def _request_head(target: _Target, headers: dict[str, str], length: int) -> bytes:
    """What urllib3 and http.client wrote for us: Host (no default port), Accept-Encoding
    identity, the headers given, Content-Length."""
    scheme, host, port = target.key
    fields = [
        f"POST {target.request_uri} HTTP/1.1",
        f"Host: {host}" if port == (443 if scheme == "https" else 80) else f"Host: {host}:{port}",
    ]
    if not any(name.lower() == "accept-encoding" for name in headers):
        fields.append("Accept-Encoding: identity")
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"Invalid header {name!r}: {value!r}")
        fields.append(f"{name}: {value}")
    fields.append(f"Content-Length: {length}\r\n\r\n")
    return "\r\n".join(fields).encode("latin-1")


class _Answer:
    """The httptools callbacks: status, the two headers we read, the body (capped and
    decoded as urllib3 decoded it: gzip and deflate; other codings are kept as sent)."""

    __slots__ = (
        "parser",
        "status",
        "retry_after",
        "encoding",
        "chunks",
        "size",
        "done",
        "keep_alive",
        "framed",
        "full",
        "_inflate",
    )

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.status = 0
        self.retry_after: str | None = None
        self.encoding = b""
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = False
        self.full = False
        self.keep_alive = False
        self.framed = False  # a Content-Length or Transfer-Encoding says where the body ends
        self._inflate: Any = None

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"retry-after":
            self.retry_after = value.decode("latin-1")
        elif lower == b"content-encoding":
            self.encoding = value.strip().lower()
        elif lower in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def delimited_by_close(self) -> bool:
        return self.status >= 200 and not self.framed

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        # Read now: once the answer is complete, llhttp has moved on to the next message.
        self.keep_alive = self.parser.should_keep_alive()
        if self.encoding in (b"gzip", b"x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding == b"deflate":
            self._inflate = _Deflate()

    def on_body(self, data: bytes) -> None:
        if self.full:
            return
        left = RESPONSE_BODY_LIMIT - self.size
        if self._inflate is not None:
            data = self._inflate.decompress(data, left)  # never more than is kept
        data = data[:left]
        self.chunks.append(data)
        self.size += len(data)
        if self.size >= RESPONSE_BODY_LIMIT:
            self.full = True

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 and self.status != 101:
            # An interim answer (100 Continue, 103 Early Hints): the final one follows.
            self.retry_after, self.encoding, self._inflate, self.framed = None, b"", None, False
            self.status = 0
            return
        self.done = True

    def text(self) -> str:
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        return cap_text(body.decode("utf-8", errors="replace"))


class _Deflate:
    """Content-Encoding: deflate is meant to be zlib-wrapped; some servers send it raw."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj()
        self._first = True

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._first:
            self._first = False
            try:
                return self._inflate.decompress(data, max_length)
            except zlib.error:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._inflate.decompress(data, max_length)


@dataclass(frozen=True)
class _Target:
    key: tuple  # (scheme, host, port): which pool
    request_uri: str  # path and query, percent-encoded as requests would send them
    authorization: str | None  # user:password in the URL, as Basic auth (requests did so)


class InvalidURL(ValueError):
    """A destination URL that cannot be sent to (the name requests gave it is kept)."""


def _parse_target(url: str) -> _Target:
    try:
        parsed = parse_url(url)
    except LocationParseError as exc:
        raise InvalidURL(f"Invalid URL {url!r}: {exc}") from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise InvalidURL(f"Invalid URL {url!r}: the scheme must be http or https")
    if not parsed.host:
        raise InvalidURL(f"Invalid URL {url!r}: no host")
    port = parsed.port or (443 if scheme == "https" else 80)
    authorization = None
    if parsed.auth:
        user, _, password = parsed.auth.partition(":")
        creds = f"{unquote(user)}:{unquote(password)}".encode("latin-1", errors="replace")
        authorization = "Basic " + base64.b64encode(creds).decode()
    return _Target((scheme, parsed.host, port), parsed.request_uri, authorization)


def new_session(policy: ssrf.Policy, pool_maxsize: int = 10) -> Sender:
    """The delivery client (see Sender); the name is kept from when it was a requests one."""
    return Sender(policy, pool_maxsize=pool_maxsize)


def _env_ca_bundle() -> str | None:
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def send(req: Request, session: Sender) -> Outcome:
    """One attempt, bounded as a whole by req.timeout: a destination that drip-feeds its
    answer is cut off at the deadline, not at each socket read's timeout."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    def timed_out() -> Outcome:
        message = f"no complete answer within {req.timeout:g}s"
        return Outcome("timeout", None, None, message, elapsed())

    timer = gevent.Timeout(req.timeout)
    timer.start()
    try:
        target = session.target(req.url)
        headers = build_headers(req)
        if target.authorization:
            headers["Authorization"] = target.authorization
        # The connect's own timeout; the overall deadline above is the one that bites.
        status, retry_after, body = session.exchange(target, headers, req.body, req.timeout + 1)
    except gevent.Timeout as exc:
        if exc is not timer:
            raise  # someone else's deadline: not ours to swallow
        return timed_out()
    except ssrf.Refused as exc:
        return Outcome("network_error", None, None, f"refused: url {exc}"[:1000], elapsed())
    except NewConnectionError as exc:  # a ConnectTimeoutError subclass: before it
        return Outcome("network_error", None, None, _describe(exc, "ConnectionError"), elapsed())
    except (ConnectTimeoutError, TimeoutError):
        return timed_out()
    except (ProtocolError, OSError) as exc:
        return Outcome("network_error", None, None, _describe(exc, "ConnectionError"), elapsed())
    except Exception as exc:  # invalid URL or header, TLS...: all are values here
        return Outcome("network_error", None, None, _describe(exc), elapsed())
    finally:
        timer.close()
    return classify(status, body, elapsed(), retry_after)


def classify(
    status: int, body: str | None, latency_ms: int, retry_after: str | None = None
) -> Outcome:
    if 200 <= status < 300:
        return Outcome("success", status, body, None, latency_ms)
    if status >= 500:
        kind = "http_5xx"
    else:
        kind = "http_4xx"  # 4xx, and 1xx/3xx: redirects are not followed
    error = f"destination answered HTTP {status}"
    if 300 <= status < 400:
        error += " (redirects are not followed)"
    wait = parse_retry_after(retry_after) if status in (429, 503) else None
    if wait is not None:
        error += f" (Retry-After: {wait:g}s)"
    return Outcome(kind, status, body, error, latency_ms, wait)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3);
    a date in the past is 0; anything else (junk, negative) is None, as if absent."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value), 10**9))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # asctime form: an HTTP-date is always GMT
        when = when.replace(tzinfo=datetime.UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _describe(exc: BaseException, kind: str | None = None) -> str:
    name = type(exc).__name__
    if kind and kind != name:
        name = f"{kind} ({name})"
    return f"{name}: {exc}"[:ERROR_MESSAGE_LIMIT]
