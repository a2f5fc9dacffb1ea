"""Build, sign and send one webhook request; the result is a value, never an exception.

No database here: the worker records what this returns. The whole attempt (connect,
send, headers, body) is bounded by one deadline, enforced by a gevent.Timeout; that
needs a gevent-patched process, as every delivery process is.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import http.cookiejar
import time
from dataclasses import dataclass

import gevent
import requests
from urllib3.exceptions import ReadTimeoutError

from gethookd import __version__, ssrf
from gethookd.crypto import sign_webhooks

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


def _read_capped(response: requests.Response) -> str:
    chunks, size = [], 0
    for chunk in response.iter_content(8192):
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_BODY_LIMIT:
            break
    return cap_text(b"".join(chunks)[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace"))


def new_session(policy: ssrf.Policy, pool_maxsize: int = 10) -> requests.Session:
    """The delivery session: no cookies kept, no retries, no proxies from the environment,
    and every connection resolved through `policy` and pinned to the address it checked."""
    session = requests.Session()
    # A webhook sender keeps no cookies: one destination's must never reach another.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    # No HTTP(S)_PROXY/.netrc from the environment: a proxy would make the connection (and
    # so the address check) go elsewhere. A CA bundle named there is still honoured.
    session.trust_env = False
    session.verify = _env_ca_bundle() or True
    adapter = ssrf.adapter(policy, pool_maxsize=pool_maxsize, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _env_ca_bundle() -> str | None:
    import os

    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


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
    except ssrf.Refused as exc:
        return Outcome("network_error", None, None, f"refused: url {exc}"[:1000], elapsed())
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
    return classify(response.status_code, body, elapsed(), response.headers.get("Retry-After"))


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


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_MESSAGE_LIMIT]
