"""What every scheme shares: the error, config field kinds, HMAC and header helpers.

Nothing here touches the database or HTTP: a scheme sees lower-cased headers, the raw
body, its decrypted config and the time, and either returns or raises VerificationFailed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

DEFAULT_TOLERANCE = 300
MAX_TOLERANCE = 86_400
MAX_VALUE = 4096


class VerificationFailed(Exception):
    """A request that must not be stored; `reason` is safe to show (no secret, no digest)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(ValueError):
    """A verification_config that cannot verify anything; the message names the field."""


# Field kinds. The OpenAPI document (gethookd/api/openapi.py) mirrors each as a JSON Schema.
SECRET = "secret"  # non-empty single line
STANDARD_SECRET = "standard_secret"  # a secret; whsec_ must be followed by base64
USERNAME = "username"  # a secret without ':'
HEADER = "header"  # an HTTP header name
ENCODING = "encoding"  # hex | base64
PREFIX = "prefix"  # a single line, may be empty
SECONDS = "seconds"  # 1..86400, a JSON number or a string of digits
ALGORITHM = "algorithm"  # sha1 | sha256 | sha512
ENCODINGS = ("hex", "base64")
ALGORITHMS = ("sha1", "sha256", "sha512")
KINDS = (SECRET, STANDARD_SECRET, USERNAME, HEADER, ENCODING, PREFIX, SECONDS, ALGORITHM)

# Pseudo-header the API layer adds to an ingest request's headers: the public URL the provider
# posted to (BASE_URL + path + query string). ':' cannot start a real HTTP header name, so no
# client can send it; it is never stored with the event (see `unstored_headers`).
PUBLIC_URL = ":url"

# Used with fullmatch: `$` would also match before a trailing newline.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}")
_LINE = re.compile(r"[^\r\n\x00]*")
_DIGITS = re.compile(r"[0-9]{1,12}")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


@dataclass(frozen=True)
class Field:
    kind: str
    required: bool = True
    shown: bool = False  # not a credential: shown unmasked in answers


def check_field(name: str, field: Field, value: object) -> str:
    """The value as stored (always a string), or ConfigError naming the field."""
    where = f"verification_config.{name}"
    if field.kind == SECONDS:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and _DIGITS.fullmatch(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number of seconds")
        if not 1 <= value <= MAX_TOLERANCE:
            raise ConfigError(f"{where} must be between 1 and {MAX_TOLERANCE} seconds")
        return str(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    if len(value) > MAX_VALUE or not _LINE.fullmatch(value):
        raise ConfigError(f"{where} must be a single line of at most {MAX_VALUE} characters")
    if field.kind == PREFIX:
        if len(value) > 100:
            raise ConfigError(f"{where} must be at most 100 characters")
        return value
    if field.kind == HEADER:
        if not HEADER_NAME.fullmatch(value):
            raise ConfigError(f"{where} must be an HTTP header name such as X-Signature")
        return value
    if field.kind == ENCODING:
        if value not in ENCODINGS:
            raise ConfigError(f"{where} must be one of: {', '.join(ENCODINGS)}")
        return value
    if field.kind == ALGORITHM:
        if value not in ALGORITHMS:
            raise ConfigError(f"{where} must be one of: {', '.join(ALGORITHMS)}")
        return value
    if not value:
        raise ConfigError(f"{where} must not be empty")
    if field.kind == USERNAME and ":" in value:
        raise ConfigError(f"{where} must not contain ':' (HTTP Basic cannot carry it)")
    if field.kind == STANDARD_SECRET and value.startswith("whsec_"):
        key = value.removeprefix("whsec_")
        if not key or not _BASE64.fullmatch(key):
            raise ConfigError(f"{where}: after whsec_ must come a non-empty base64 key")
    return value


# -- helpers for the schemes ---------------------------------------------------------------


def hmac_sha256(key: bytes | str, message: bytes) -> bytes:
    return hmac_digest("sha256", key, message)


def hmac_digest(algorithm: str, key: bytes | str, message: bytes) -> bytes:
    """HMAC with one of ALGORITHMS (sha1 for Twilio and older providers, sha512 for others)."""
    if isinstance(key, str):
        key = key.encode()
    return hmac.new(key, message, getattr(hashlib, algorithm)).digest()


def json_field(body: bytes, name: str) -> str | None:
    """A top-level string (or number) field of a JSON object body, else None; never raises."""
    if body[:1] != b"{":
        return None
    try:
        value = json.loads(body).get(name)
    except (ValueError, AttributeError, RecursionError):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


def header(headers: dict[str, str], name: str) -> str:
    """The header's value, or VerificationFailed naming the missing header."""
    value = headers.get(name.lower())
    if value is None or not value.strip():
        raise VerificationFailed(f"missing {name} header")
    return value.strip()


def from_hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise VerificationFailed(f"{what} is not hexadecimal") from None


def from_base64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationFailed(f"{what} is not base64") from None


def same(expected: bytes, given: bytes) -> bool:
    return hmac.compare_digest(expected, given)


def same_text(expected: str, given: str) -> bool:
    """Constant-time equality of two strings (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(
        expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass")
    )


def tolerance(config: dict) -> int:
    return int(config.get("tolerance_seconds") or DEFAULT_TOLERANCE)


def check_timestamp(raw: str, now: float, config: dict, what: str) -> None:
    """Refuse replays: the signed timestamp must be within the tolerance of now."""
    if not _DIGITS.fullmatch(raw):
        raise VerificationFailed(f"{what} is not a Unix timestamp in seconds")
    limit = tolerance(config)
    age = now - int(raw)
    if age > limit:
        raise VerificationFailed(
            f"{what} is {int(age)} seconds old, beyond the {limit} second tolerance"
        )
    if -age > limit:
        raise VerificationFailed(
            f"{what} is {int(-age)} seconds in the future, beyond the {limit} second tolerance"
        )


def check_timestamped_hmac(
    headers: dict[str, str],
    body: bytes,
    config: dict,
    now: float,
    *,
    name: str,
    separator: str,
    ts_key: str,
    sig_key: str,
    joiner: bytes,
) -> None:
    """The scheme Stripe and Paddle share: `name: <ts_key>=<unix><separator><sig_key>=<hex>`,
    HMAC-SHA256 over `<ts><joiner><body>`, within the timestamp tolerance. Several signatures
    appear while a secret is being rotated; any one may match."""
    timestamp, signatures = None, []
    for item in header(headers, name).split(separator):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise VerificationFailed(
                f"{name} is malformed: expected {ts_key}=...{separator}{sig_key}=..."
            )
        if key == ts_key:
            timestamp = value
        elif key == sig_key:
            signatures.append(value)
    if timestamp is None:
        raise VerificationFailed(f"{name} has no timestamp ({ts_key}=)")
    if not signatures:
        raise VerificationFailed(f"{name} has no {sig_key} signature")
    check_timestamp(timestamp, now, config, f"{name} timestamp")
    expected = hmac_sha256(config["secret"], timestamp.encode() + joiner + body)
    matched = False
    for given in signatures:
        matched |= same(expected, from_hex(given, f"{name} {sig_key} signature"))
    if not matched:
        raise VerificationFailed(f"no {sig_key} signature in {name} matches the body and secret")
