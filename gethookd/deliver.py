"""Build, sign and send one webhook request; the result is a value, never an exception.

No database here: the worker records what this returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gevent
import requests

from gethookd import __version__
from gethookd.crypto import sign_webhook

RESPONSE_BODY_LIMIT = 64 * 1024
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}


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
    outcome: str  # success, timeout, network_error, http_4xx, http_5xx
    response_status: int | None
    response_body: str | None
    error_message: str | None
    latency_ms: int

    @property
    def ok(self) -> bool:
        return self.outcome == "success"


def build_headers(req: Request, now: float | None = None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in (req.custom_headers or {}).items():
        if name.lower() not in _HOP_BY_HOP:
            headers[str(name)] = str(value)
    auth = req.auth_config or {}
    if auth.get("type") == "bearer" and auth.get("token"):
        headers["Authorization"] = f"Bearer {auth['token']}"
    elif auth.get("type") == "api_key" and auth.get("value"):
        headers[auth.get("header") or "X-API-Key"] = str(auth["value"])
    elif auth.get("type") == "basic" and auth.get("username") is not None:
        import base64

        creds = f"{auth['username']}:{auth.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(creds).decode()
    headers["Content-Type"] = req.content_type or "application/octet-stream"
    headers["User-Agent"] = f"gethookd/{__version__}"
    timestamp = int(now if now is not None else time.time())
    headers["Webhook-Id"] = req.event_id
    headers["Webhook-Timestamp"] = str(timestamp)
    headers["X-GetHook-Event-Id"] = req.event_id
    headers["X-GetHook-Attempt"] = str(req.attempt_number)
    if req.event_type:
        headers["X-GetHook-Event-Type"] = req.event_type
    if req.signing_secret:
        headers["Webhook-Signature"] = sign_webhook(
            req.signing_secret, req.event_id, timestamp, req.body
        )
    return headers


def _read_capped(response: requests.Response) -> str:
    chunks, size = [], 0
    for chunk in response.iter_content(8192):
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_BODY_LIMIT:
            break
    text = b"".join(chunks)[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL


def send(req: Request, session: requests.Session) -> Outcome:
    """One attempt, bounded as a whole by req.timeout (under gevent, a gevent.Timeout)."""

    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        with gevent.Timeout(req.timeout):
            response = session.post(
                req.url,
                data=req.body,
                headers=build_headers(req),
                timeout=req.timeout,
                allow_redirects=False,
                stream=True,
            )
            try:
                body = _read_capped(response)
            finally:
                response.close()
    except gevent.Timeout:
        return Outcome(
            "timeout", None, None, f"no complete answer within {req.timeout:g}s", elapsed()
        )
    except requests.Timeout as exc:
        return Outcome("timeout", None, None, f"timed out: {exc}", elapsed())
    except requests.RequestException as exc:
        return Outcome("network_error", None, None, _describe(exc), elapsed())
    status = response.status_code
    if 200 <= status < 300:
        kind = "success"
    elif status >= 500:
        kind = "http_5xx"
    else:
        kind = "http_4xx"
    error = None if kind == "success" else f"destination answered HTTP {status}"
    return Outcome(kind, status, body, error, elapsed())


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:1000]
