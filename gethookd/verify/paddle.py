"""Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex HMAC-SHA256(secret, "<ts>:<body>")>`.

Several h1 entries appear while a secret is being rotated; any one may match. The secret is the
notification destination's endpoint secret key (pdl_ntfset_...), used as it is written.
"""

from __future__ import annotations

from gethookd.verify.base import (
    SECONDS,
    SECRET,
    Field,
    VerificationFailed,
    check_timestamp,
    from_hex,
    header,
    hmac_sha256,
    json_field,
    same,
)

NAME = "paddle"
FIELDS = {"secret": Field(SECRET), "tolerance_seconds": Field(SECONDS, False, True)}
HEADER = "Paddle-Signature"


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    timestamp, signatures = None, []
    for item in header(headers, HEADER).split(";"):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise VerificationFailed(f"{HEADER} is malformed: expected ts=...;h1=...")
        if key == "ts":
            timestamp = value
        elif key == "h1":
            signatures.append(value)
    if timestamp is None:
        raise VerificationFailed(f"{HEADER} has no timestamp (ts=)")
    if not signatures:
        raise VerificationFailed(f"{HEADER} has no h1 signature")
    check_timestamp(timestamp, now, config, f"{HEADER} timestamp")
    expected = hmac_sha256(config["secret"], timestamp.encode() + b":" + body)
    matched = False
    for given in signatures:
        matched |= same(expected, from_hex(given, f"{HEADER} h1 signature"))
    if not matched:
        raise VerificationFailed(f"no h1 signature in {HEADER} matches the body and secret")


def delivery_id(headers: dict[str, str], body: bytes) -> str | None:
    return json_field(body, "notification_id")


def event_type(headers: dict[str, str], body: bytes) -> str | None:
    return json_field(body, "event_type")
