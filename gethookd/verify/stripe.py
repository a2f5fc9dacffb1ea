"""Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=...]` over "<ts>.<body>".

The whsec_ secret is used as it is written (Stripe does not base64-decode it). Several v1
entries appear while a secret is being rolled; any one may match.
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

NAME = "stripe"
FIELDS = {"secret": Field(SECRET), "tolerance_seconds": Field(SECONDS, False, True)}
HEADER = "Stripe-Signature"


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    timestamp, signatures = None, []
    for item in header(headers, HEADER).split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise VerificationFailed(f"{HEADER} is malformed: expected t=...,v1=...")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None:
        raise VerificationFailed(f"{HEADER} has no timestamp (t=)")
    if not signatures:
        raise VerificationFailed(f"{HEADER} has no v1 signature")
    check_timestamp(timestamp, now, config, f"{HEADER} timestamp")
    expected = hmac_sha256(config["secret"], timestamp.encode() + b"." + body)
    matched = False
    for given in signatures:
        matched |= same(expected, from_hex(given, f"{HEADER} v1 signature"))
    if not matched:
        raise VerificationFailed(f"no v1 signature in {HEADER} matches the body and secret")


def delivery_id(headers: dict[str, str], body: bytes) -> str | None:
    """Stripe retries send the same event (same `id`) with a new signature."""
    return json_field(body, "id")
