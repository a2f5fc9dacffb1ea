"""Slack: `X-Slack-Signature: v0=<hex>` over "v0:<ts>:<body>", ts in X-Slack-Request-Timestamp."""

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

NAME = "slack"
FIELDS = {"secret": Field(SECRET), "tolerance_seconds": Field(SECONDS, False, True)}
HEADER = "X-Slack-Signature"
TIMESTAMP = "X-Slack-Request-Timestamp"


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    value = header(headers, HEADER)
    timestamp = header(headers, TIMESTAMP)
    if not value.startswith("v0="):
        raise VerificationFailed(f"{HEADER} must start with v0=")
    given = from_hex(value.removeprefix("v0="), HEADER)
    check_timestamp(timestamp, now, config, TIMESTAMP)
    expected = hmac_sha256(config["secret"], b"v0:" + timestamp.encode() + b":" + body)
    if not same(expected, given):
        raise VerificationFailed(f"{HEADER} does not match the body and secret")


def delivery_id(headers: dict[str, str], body: bytes) -> str | None:
    """Events API retries (X-Slack-Retry-Num) repeat the event_id."""
    return json_field(body, "event_id")
