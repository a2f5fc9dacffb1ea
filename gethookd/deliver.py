"""Build, sign and send one webhook request; the result is a value, never an exception.

No database here: the worker records what this returns. The whole attempt (connect,
send, headers, body) is bounded by one deadline, enforced by a gevent.Timeout; that
needs a gevent-patched process, as every delivery process is.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import gevent
import requests
from urllib3.exceptions import ReadTimeoutError

from gethookd import __version__
from gethookd.crypto import sign_webhook

RESPONSE_BODY_LIMIT = 64 * 1024  # bytes of UTF-8 text kept from a destination's answer
ERROR_MESSAGE_LIMIT = 1000
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}
OUTCOMES = ("success", "timeout", "network_error", "http_4xx", "http_5xx", "cancelled")


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    content_type: str | None
    event_id: str
    event_type: str | None
    attempt_number: int
    timeout: float
    signing_secret: str | None = None
    custom_headers: dict | None = None
    auth_config: dict | None = None


@dataclass(frozen=True)
class Outcome:
    outcome: str  # one of OUTCOMES
    response_status: int | None
    response_body: str | None
    error_message: str | None
    latency_ms: int

    @property
    def ok(self) -> bool:
        return self.outcome == "success"


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
    if req.signing_secret:
        ours["Webhook-Signature"] = sign_webhook(
            req.signing_secret, req.event_id, timestamp, req.body
        )
    taken = {name.lower() for name in ours}
    headers = {k: v for k, v in headers.items() if k.lower() not in taken}
    headers.update(ours)
    return headers


def _read_capped(response: requests.Response) -> str:
    chunks, size = [], 0
    for chunk in response.iter_content(8192):
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_BODY_LIMIT:
            break
    return cap_text(b"".join(chunks)[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace"))


def send(req: Request, session: requests.Session) -> Outcome:
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
        response = session.post(
            req.url,
            data=req.body,
            headers=build_headers(req),
            # Per socket operation; the overall deadline above is the one that bites.
            timeout=req.timeout + 1,
            allow_redirects=False,
            stream=True,
        )
        try:
            body = _read_capped(response)
        finally:
            response.close()
    except gevent.Timeout as exc:
        if exc is not timer:
            raise  # someone else's deadline: not ours to swallow
        return timed_out()
    except requests.Timeout:
        return timed_out()
    except requests.ConnectionError as exc:
        # A read timeout while streaming the body surfaces as a ConnectionError.
        if exc.args and isinstance(exc.args[0], ReadTimeoutError):
            return timed_out()
        return Outcome("network_error", None, None, _describe(exc), elapsed())
    except Exception as exc:  # invalid URL or header, TLS, decoding...: all are values here
        return Outcome("network_error", None, None, _describe(exc), elapsed())
    finally:
        timer.close()
    return classify(response.status_code, body, elapsed())


def classify(status: int, body: str | None, latency_ms: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome("success", status, body, None, latency_ms)
    if status >= 500:
        kind = "http_5xx"
    else:
        kind = "http_4xx"  # 4xx, and 1xx/3xx: redirects are not followed
    error = f"destination answered HTTP {status}"
    if 300 <= status < 400:
        error += " (redirects are not followed)"
    return Outcome(kind, status, body, error, latency_ms)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_MESSAGE_LIMIT]
