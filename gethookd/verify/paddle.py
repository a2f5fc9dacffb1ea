"""Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex HMAC-SHA256(secret, "<ts>:<body>")>`.

Several h1 entries appear while a secret is being rotated; any one may match. The secret is the
notification destination's endpoint secret key (pdl_ntfset_...), used as it is written.
"""

from __future__ import annotations

from gethookd.verify.base import SECONDS, SECRET, Field, check_timestamped_hmac, json_field

NAME = "paddle"
FIELDS = {"secret": Field(SECRET), "tolerance_seconds": Field(SECONDS, False, True)}
HEADER = "Paddle-Signature"


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    check_timestamped_hmac(
        headers,
        body,
        config,
        now,
        name=HEADER,
        separator=";",
        ts_key="ts",
        sig_key="h1",
        joiner=b":",
    )


def delivery_id(headers: dict[str, str], body: bytes) -> str | None:
    return json_field(body, "notification_id")


def event_type(headers: dict[str, str], body: bytes) -> str | None:
    return json_field(body, "event_type")
