"""Any provider that sends HMAC-SHA256 of the body in one header (auth_mode hmac).

Config: secret; header (default X-Signature); encoding hex|base64 (default hex); prefix
(e.g. "sha256=") that the header value starts with.
"""

from __future__ import annotations

from gethookd.verify.base import (
    ENCODING,
    HEADER,
    PREFIX,
    SECRET,
    Field,
    VerificationFailed,
    from_base64,
    from_hex,
    header,
    hmac_sha256,
    same,
)

NAME = "hmac"
FIELDS = {
    "secret": Field(SECRET),
    "header": Field(HEADER, False, True),
    "encoding": Field(ENCODING, False, True),
    "prefix": Field(PREFIX, False, True),
}


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    name = config.get("header") or "X-Signature"
    value = header(headers, name)
    prefix = config.get("prefix") or ""
    if not value.startswith(prefix):
        raise VerificationFailed(f"{name} must start with {prefix}")
    value = value[len(prefix) :]
    if config.get("encoding") == "base64":
        given = from_base64(value, name)
    else:
        given = from_hex(value, name)
    if not same(hmac_sha256(config["secret"], body), given):
        raise VerificationFailed(f"{name} does not match the body and secret")
