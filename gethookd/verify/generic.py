"""Any provider that sends an HMAC of the body in one header (auth_mode hmac or shared_secret).

Config: secret; header (default X-Signature); algorithm sha1|sha256|sha512 (default sha256);
encoding hex|base64 (default hex); prefix (e.g. "sha256=") that the header value starts with.
"""

from __future__ import annotations

from gethookd.verify.base import (
    ALGORITHM,
    ENCODING,
    HEADER,
    PREFIX,
    SECRET,
    Field,
    VerificationFailed,
    from_base64,
    from_hex,
    header,
    hmac_digest,
    same,
)

NAME = "hmac"
FIELDS = {
    "secret": Field(SECRET),
    "header": Field(HEADER, False, True),
    "algorithm": Field(ALGORITHM, False, True),
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
    expected = hmac_digest(config.get("algorithm") or "sha256", config["secret"], body)
    if not same(expected, given):
        raise VerificationFailed(f"{name} does not match the body and secret")
