"""GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`."""

from __future__ import annotations

from gethookd.verify.base import (
    SECRET,
    Field,
    VerificationFailed,
    from_hex,
    header,
    hmac_sha256,
    same,
)

NAME = "github"
FIELDS = {"secret": Field(SECRET)}
HEADER = "X-Hub-Signature-256"


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    value = header(headers, HEADER)
    if not value.startswith("sha256="):
        raise VerificationFailed(f"{HEADER} must start with sha256=")
    given = from_hex(value.removeprefix("sha256="), HEADER)
    if not same(hmac_sha256(config["secret"], body), given):
        raise VerificationFailed(f"{HEADER} does not match the body and secret")


def delivery_id(headers: dict[str, str], body: bytes) -> str | None:
    return headers.get("x-github-delivery") or None
