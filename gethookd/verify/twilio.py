"""Twilio: `X-Twilio-Signature: <base64 HMAC-SHA1(auth token, url + sorted params)>`.

As Twilio's RequestValidator: a form-encoded body signs the full URL followed by each
parameter name and value, sorted; any other body signs the URL alone and the URL carries
`bodySHA256=<hex SHA-256 of the body>`, which must match. The URL is the public one the
provider posted to: the source's ingest_url (built from BASE_URL, so a gateway behind a
proxy still verifies) with the request's query string, or the same path on the host the
request names (a custom domain). Each is tried with and without the default port, since
Twilio signs either way.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

from gethookd.verify.base import (
    PUBLIC_URL,
    SECRET,
    Field,
    VerificationFailed,
    from_base64,
    header,
    hmac_digest,
    same,
    same_text,
)

NAME = "twilio"
FIELDS = {"secret": Field(SECRET)}
HEADER = "X-Twilio-Signature"
FORM = "application/x-www-form-urlencoded"


def _is_form(headers: dict[str, str]) -> bool:
    return headers.get("content-type", "").split(";")[0].strip().lower() == FORM


def _params(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)


def _candidates(headers: dict[str, str]) -> list[str]:
    public = headers.get(PUBLIC_URL)
    if not public:
        raise VerificationFailed("the gateway cannot tell the public URL; set BASE_URL")
    parts = urlsplit(public)
    urls = [public]
    host = (headers.get("x-forwarded-host") or headers.get("host") or "").split(",")[0].strip()
    proto = (headers.get("x-forwarded-proto") or parts.scheme).split(",")[0].strip().lower()
    if host and (host.lower() != parts.netloc.lower() or proto != parts.scheme):
        if proto in ("http", "https") and "/" not in host and " " not in host:
            urls.append(urlunsplit((proto, host, parts.path, parts.query, "")))
    out = []
    for url in urls:
        try:  # a Host header is the client's: it may not even parse
            u = urlsplit(url)
            port = u.port
        except ValueError:
            continue
        default = {"https": 443, "http": 80}.get(u.scheme)
        bare = u.hostname or ""
        if ":" in bare:
            bare = f"[{bare}]"
        userinfo = u.netloc.rpartition("@")[0]
        prefix = f"{userinfo}@" if userinfo else ""
        without = urlunsplit((u.scheme, prefix + bare, u.path, u.query, ""))
        with_port = urlunsplit((u.scheme, f"{prefix}{bare}:{port or default}", u.path, u.query, ""))
        if port in (None, default):
            out += [without, with_port]
        else:
            out.append(url)
    return out


def _signed_text(url: str, params: list[tuple[str, str]]) -> bytes:
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    text = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    return text.encode("utf-8", "surrogatepass")


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    given = from_base64(header(headers, HEADER), HEADER)
    form = _is_form(headers)
    params = _params(body) if form else []
    matched = False
    for url in _candidates(headers):
        if not form:
            hashes = parse_qs(urlsplit(url).query, keep_blank_values=True).get("bodySHA256")
            if hashes is None and body:
                raise VerificationFailed(
                    "a Twilio request that is not form-encoded must carry bodySHA256 in its URL"
                )
            if hashes is not None and not same_text(
                hashlib.sha256(body).hexdigest(), hashes[0].lower()
            ):
                raise VerificationFailed("bodySHA256 does not match the body")
        matched |= same(hmac_digest("sha1", config["secret"], _signed_text(url, params)), given)
    if not matched:
        raise VerificationFailed(f"{HEADER} does not match the URL, parameters and auth token")


def delivery_id(headers: dict[str, str], body: bytes) -> str | None:
    return headers.get("i-twilio-idempotency-token") or None


def event_type(headers: dict[str, str], body: bytes) -> str | None:
    """`message.<status>` or `call.<status>` from a status callback; a JSON event's `type`."""
    if _is_form(headers):
        params = dict(_params(body))
        if params.get("CallStatus"):
            return f"call.{params['CallStatus']}"
        status = params.get("MessageStatus") or params.get("SmsStatus")
        return f"message.{status}" if status else None
    if body[:1] in (b"{", b"["):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if isinstance(data, list) and data:
            data = data[0]
        value = data.get("type") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None
    return None
