"""Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>`."""

from __future__ import annotations

from gethookd.verify.base import (
    SECRET,
    Field,
    VerificationFailed,
    from_base64,
    header,
    hmac_sha256,
    same,
)

NAME = "shopify"
FIELDS = {"secret": Field(SECRET)}
HEADER = "X-Shopify-Hmac-Sha256"


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    given = from_base64(header(headers, HEADER), HEADER)
    if not same(hmac_sha256(config["secret"], body), given):
        raise VerificationFailed(f"{HEADER} does not match the body and secret")


def delivery_id(headers: dict[str, str], body: bytes) -> str | None:
    return headers.get("x-shopify-webhook-id") or None
