"""Request parsing: every field checked, every failure a 400 naming the field."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import falcon

from gethookd.errors import Invalid, TooLarge

MAX_JSON_BYTES = 256 * 1024
_MISSING = object()
_URL_CHARS = re.compile(r"^[\x21-\x7e]+$")
# A DNS name (letters, digits, hyphens, dots) or an IP literal (urlsplit strips the brackets;
# an IPv6 zone id, `%25eth0`, is kept so the address policy can name what it is).
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$"
    r"|^[0-9A-Fa-f:.]+(?:%(?:25)?[A-Za-z0-9._~-]+)?$"
)


def json_body(req: falcon.Request, *, optional: bool = False) -> dict:
    """The request's JSON object; an empty body is {} only where optional."""
    length = req.content_length
    if length is not None and length > MAX_JSON_BYTES:
        raise TooLarge(f"request body exceeds {MAX_JSON_BYTES} bytes")
    raw = req.bounded_stream.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise TooLarge(f"request body exceeds {MAX_JSON_BYTES} bytes")
    if not raw.strip():
        if optional:
            return {}
        raise Invalid("request body must be a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    return body


def string(
    body: dict,
    name: str,
    *,
    required: bool = False,
    max_len: int = 200,
    allow_empty: bool = False,
    strip: bool = True,
) -> str | None:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise Invalid(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    if "\x00" in value:
        raise Invalid(f"{name} must not contain NUL characters")
    if len(value) > max_len:
        raise Invalid(f"{name} must be at most {max_len} characters")
    if not value.strip() and not allow_empty:
        raise Invalid(f"{name} must not be empty")
    return value.strip() if strip else value


def integer(body: dict, name: str, *, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 30.0 is 30
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{name} must be a whole number")
    if not low <= value <= high:
        raise Invalid(f"{name} must be between {low} and {high}")
    return value


def boolean(body: dict, name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false")
    return value


def choice(body: dict, name: str, choices: tuple[str, ...]) -> str | None:
    value = string(body, name, strip=False)
    if value is not None and value not in choices:
        raise Invalid(f"{name} must be one of: {', '.join(choices)}")
    return value


def obj(body: dict, name: str, *, values: type = str) -> dict | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Invalid(f"{name} must be a JSON object")
    for key, item in value.items():
        if not isinstance(item, values):
            raise Invalid(f"{name}.{key} must be a {values.__name__}")
        if "\x00" in key or (isinstance(item, str) and "\x00" in item):
            raise Invalid(f"{name} must not contain NUL characters")
    return value


def http_url(body: dict, name: str, *, required: bool = False) -> str | None:
    value = string(body, name, required=required, max_len=2048, strip=False)
    if value is None:
        return None
    if not _URL_CHARS.fullmatch(value):
        raise Invalid(
            f"{name} must be an http(s) URL without spaces or non-ASCII characters "
            "(use punycode for international host names)"
        )
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise Invalid(f"{name} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise Invalid(f"{name} must be an http:// or https:// URL")
    if not _HOST.fullmatch(hostname):
        raise Invalid(f"{name} has an invalid host name {hostname[:80]!r}")
    return value


def uuid_value(raw: Any, name: str) -> uuid.UUID:
    if not isinstance(raw, str):
        raise Invalid(f"{name} must be a UUID string")
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Invalid(f"{name} is not a valid UUID: {raw[:80]!r}") from None


def optional_uuid(body: dict, name: str, *, required: bool = False) -> uuid.UUID | None:
    value = body.get(name)
    if value is None:
        if required:
            raise Invalid(f"{name} is required")
        return None
    return uuid_value(value, name)


def query_int(req: falcon.Request, name: str, default: int, low: int, high: int) -> int:
    raw = _param(req, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(f"query parameter {name} must be a whole number") from None
    if not low <= value <= high:
        raise Invalid(f"query parameter {name} must be between {low} and {high}")
    return value


def query_choice(req: falcon.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = _param(req, name)
    if raw is None:
        return None
    if raw not in choices:
        raise Invalid(f"query parameter {name} must be one of: {', '.join(choices)}")
    return raw


def query_uuid(req: falcon.Request, name: str) -> uuid.UUID | None:
    raw = _param(req, name)
    if raw is None:
        return None
    return uuid_value(raw, f"query parameter {name}")


def query_value(req: falcon.Request, name: str) -> str | None:
    """One value of a query parameter, or None; given twice is an error."""
    values = req.get_param_as_list(name)
    if values is None:
        return None
    if len(values) != 1:
        raise Invalid(f"query parameter {name} may be given once")
    return values[0]


def _param(req: falcon.Request, name: str) -> str | None:
    """One value; `?x=` is an error rather than silently ignored (the app keeps blank values)."""
    value = query_value(req, name)
    if value == "":
        raise Invalid(f"query parameter {name} must not be empty")
    return value


_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
# auth_config type -> (required fields, optional fields)
_AUTH_FIELDS = {
    "none": ((), ()),
    "bearer": (("token",), ()),
    "api_key": (("value",), ("header",)),
    "basic": (("username",), ("password",)),
}


def headers_obj(body: dict, name: str) -> dict | None:
    """Custom headers: valid names, single-line string values (no header injection)."""
    value = obj(body, name)
    if value is None:
        return None
    if len(value) > 50:
        raise Invalid(f"{name} may hold at most 50 headers")
    for key, item in value.items():
        if not _HEADER_NAME.fullmatch(key):
            raise Invalid(f"{name}: {key[:60]!r} is not a valid HTTP header name")
        if "\r" in item or "\n" in item or len(item) > 4096:
            raise Invalid(f"{name}.{key} must be a single line of at most 4096 characters")
    return value


def auth_config(body: dict, name: str = "auth_config") -> dict | None:
    """{"type": none|bearer|api_key|basic, ...credentials}; checked per type."""
    value = obj(body, name)
    if value is None:
        return None
    kind = value.get("type")
    if kind not in _AUTH_FIELDS:
        raise Invalid(f"{name}.type must be one of: {', '.join(_AUTH_FIELDS)}")
    required, optional = _AUTH_FIELDS[kind]
    for field in required:
        if not value.get(field):
            raise Invalid(f"{name}.{field} is required when {name}.type is {kind}")
    unknown = set(value) - {"type", *required, *optional}
    if unknown:
        raise Invalid(f"{name} for type {kind} takes no {', '.join(sorted(unknown))}")
    if kind == "api_key" and "header" in value and not _HEADER_NAME.fullmatch(value["header"]):
        raise Invalid(f"{name}.header is not a valid HTTP header name")
    for key, item in value.items():
        if "\r" in item or "\n" in item or len(item) > 4096:
            raise Invalid(f"{name}.{key} must be a single line of at most 4096 characters")
    return value


def reject_unknown(body: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(allowed)}")
