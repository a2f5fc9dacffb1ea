"""Standard Webhooks (and Svix, which sends the same under svix-* names).

`webhook-signature: v1,<base64> [v1,<base64> ...]` over "<id>.<timestamp>.<body>", keyed
with the whsec_ secret base64-decoded (any other secret as UTF-8, as gethookd signs).
"""

from __future__ import annotations

from gethookd.crypto import signing_key
from gethookd.verify.base import (
    SECONDS,
    STANDARD_SECRET,
    Field,
    VerificationFailed,
    check_timestamp,
    from_base64,
    header,
    hmac_sha256,
    same,
)

NAME = "standard_webhooks"
FIELDS = {"secret": Field(STANDARD_SECRET), "tolerance_seconds": Field(SECONDS, False, True)}


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    prefix = "webhook" if "webhook-signature" in headers else "svix"
    if prefix == "svix" and "svix-signature" not in headers:
        raise VerificationFailed("missing webhook-signature header")
    msg_id = header(headers, f"{prefix}-id")
    timestamp = header(headers, f"{prefix}-timestamp")
    signatures = header(headers, f"{prefix}-signature").split()
    check_timestamp(timestamp, now, config, f"{prefix}-timestamp")
    expected = hmac_sha256(signing_key(config["secret"]), f"{msg_id}.{timestamp}.".encode() + body)
    matched, versions = False, 0
    for item in signatures:
        version, sep, value = item.partition(",")
        if not sep:
            raise VerificationFailed(f"{prefix}-signature is malformed: expected v1,<base64>")
        if version == "v1":
            versions += 1
            matched |= same(expected, from_base64(value, f"{prefix}-signature"))
    if not versions:
        raise VerificationFailed(f"{prefix}-signature has no v1 signature")
    if not matched:
        raise VerificationFailed(
            f"no v1 signature in {prefix}-signature matches the body and secret"
        )


def delivery_id(headers: dict[str, str], body: bytes) -> str | None:
    """webhook-id (svix-id) is the message id, the same on every retry."""
    return headers.get("webhook-id") or headers.get("svix-id") or None
