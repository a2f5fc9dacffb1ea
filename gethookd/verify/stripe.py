"""Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=...]` over "<ts>.<body>".

The whsec_ secret is used as it is written (Stripe does not base64-decode it). Several v1
entries appear while a secret is being rolled; any one may match.
"""

from __future__ import annotations

from gethookd.verify.base import SECONDS, SECRET, Field, check_timestamped_hmac, json_field

NAME = "stripe"
FIELDS = {"secret": Field(SECRET), "tolerance_seconds": Field(SECONDS, False, True)}
HEADER = "Stripe-Signature"


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    check_timestamped_hmac(
        headers,
        body,
        config,
        now,
        name=HEADER,
        separator=",",
        ts_key="t",
        sig_key="v1",
        joiner=b".",
    )


def delivery_id(headers: dict[str, str], body: bytes) -> str | None:
    """Stripe retries send the same event (same `id`) with a new signature."""
    return json_field(body, "id")
