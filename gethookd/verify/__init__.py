"""Inbound verification: one module per scheme, one interface, one registry.

Every scheme module has NAME, FIELDS (its verification_config keys) and
`verify(headers, body, config, now)`, which returns or raises VerificationFailed; a
provider's module may add `delivery_id(headers, body)` (the provider's own id of the
delivery, the same on its retries: what ingest deduplicates on) and `event_type(headers,
body)`. A source's auth_mode and provider choose the scheme; `check_config` validates a
config for it when the source is created, and again before use at ingest (rows written
before validation existed fail closed).

auth_mode shared_secret is GetHook's name for hmac (its SDK offers only none and
shared_secret): the same scheme, and with a known provider that provider's scheme.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from gethookd.verify import (
    api_key,
    basic,
    bearer,
    generic,
    github,
    none,
    paddle,
    shopify,
    slack,
    standard,
    stripe,
    twilio,
)
from gethookd.verify.base import (
    HEADER,
    PUBLIC_URL,
    ConfigError,
    Field,
    VerificationFailed,
    check_field,
)

__all__ = [
    "ConfigError",
    "Field",
    "Scheme",
    "VerificationFailed",
    "check_config",
    "credential_headers",
    "delivery_id",
    "event_type",
    "scheme_for",
    "verify_request",
]


@dataclass(frozen=True)
class Scheme:
    name: str
    fields: dict[str, Field]
    verify: Callable[[dict[str, str], bytes, dict, float], None]
    delivery_id: Callable[[dict[str, str], bytes], str | None] | None = None
    event_type: Callable[[dict[str, str], bytes], str | None] | None = None


def _scheme(module) -> Scheme:
    return Scheme(
        module.NAME,
        module.FIELDS,
        module.verify,
        getattr(module, "delivery_id", None),
        getattr(module, "event_type", None),
    )


SCHEMES = {
    m.NAME: _scheme(m)
    for m in (
        none,
        generic,
        basic,
        bearer,
        api_key,
        stripe,
        github,
        shopify,
        slack,
        standard,
        twilio,
        paddle,
    )
}
# provider field -> scheme, for auth_mode provider (and hmac with a provider named here).
PROVIDERS = {
    "stripe": "stripe",
    "github": "github",
    "shopify": "shopify",
    "slack": "slack",
    "standard_webhooks": "standard_webhooks",
    "svix": "standard_webhooks",
    "twilio": "twilio",
    "paddle": "paddle",
}
# auth_mode -> scheme, for the modes that do not depend on the provider.
MODES = {
    "none": "none",
    "hmac": "hmac",
    "shared_secret": "hmac",
    "basic": "basic",
    "bearer": "bearer",
    "api_key": "api_key",
}
# Modes that take a known provider's own scheme when one is named.
HMAC_MODES = ("hmac", "shared_secret")
# Keys every scheme accepts (auth_mode none too): what ingest does besides verifying.
COMMON_FIELDS = {"dedup_header": Field(HEADER, False, True)}
MAX_DELIVERY_ID = 200


def scheme_for(auth_mode: str, provider: str | None) -> Scheme:
    if auth_mode == "provider":
        if provider not in PROVIDERS:
            raise ConfigError(
                f"provider must be one of: {', '.join(PROVIDERS)} for auth_mode provider"
                " (or use auth_mode hmac with verification_config.header for another provider)"
            )
        return SCHEMES[PROVIDERS[provider]]
    if auth_mode in HMAC_MODES and provider in PROVIDERS:
        return SCHEMES[PROVIDERS[provider]]
    if auth_mode not in MODES:
        raise ConfigError(f"auth_mode must be one of: {', '.join([*MODES, 'provider'])}")
    return SCHEMES[MODES[auth_mode]]


def _label(auth_mode: str, provider: str | None, scheme: Scheme) -> str:
    return f"provider {provider}" if scheme.name not in MODES else f"auth_mode {auth_mode}"


def check_config(auth_mode: str, provider: str | None, config: dict | None) -> dict:
    """The config as stored (every value a string), or ConfigError naming the field."""
    scheme = scheme_for(auth_mode, provider)
    config = config or {}
    if scheme.name == "none" and set(config) - set(COMMON_FIELDS):
        raise ConfigError(
            "verification_config is not used with auth_mode none (except dedup_header); "
            "choose an auth_mode (hmac, basic, bearer, api_key or provider) or leave "
            "verification_config out"
        )
    label = _label(auth_mode, provider, scheme)
    fields = {**scheme.fields, **COMMON_FIELDS}
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ConfigError(
            f"verification_config for {label} takes no {', '.join(unknown)}; "
            f"allowed: {', '.join(fields)}"
        )
    checked = {}
    for name, field in fields.items():
        if config.get(name) is None:
            if field.required:
                raise ConfigError(f"verification_config.{name} is required for {label}")
            continue
        checked[name] = check_field(name, field, config[name])
    return checked


def shown_fields(auth_mode: str, provider: str | None) -> set[str]:
    """Config keys that are no credential, shown unmasked in answers."""
    try:
        scheme = scheme_for(auth_mode, provider)
    except ConfigError:
        return set()
    fields = {**scheme.fields, **COMMON_FIELDS}
    return {name for name, field in fields.items() if field.shown}


def credential_headers(auth_mode: str, config: dict) -> set[str]:
    """Lower-case names of request headers never stored with the event: a credential meant
    for the gateway, and the pseudo-header PUBLIC_URL the API layer adds."""
    if auth_mode == "api_key" and config.get("header"):
        return {config["header"].lower(), PUBLIC_URL}
    return {PUBLIC_URL}


def delivery_id(
    auth_mode: str,
    provider: str | None,
    config: dict | None,
    headers: dict[str, str],
    body: bytes,
) -> str | None:
    """The provider's own id of this delivery (what a retry repeats), or None: no dedup.

    verification_config.dedup_header names it for any source; otherwise the scheme knows
    where its provider puts it. Call only after the request verified, so that a forger
    cannot burn an id. Long or odd ids come back as a digest, so the key stays small.
    """
    config = config or {}
    name = config.get("dedup_header")
    if name:
        value = headers.get(name.lower())
    else:
        try:
            scheme = scheme_for(auth_mode, provider)
        except ConfigError:
            return None
        value = scheme.delivery_id(headers, body) if scheme.delivery_id else None
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > MAX_DELIVERY_ID or not value.isprintable() or not value.isascii():
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        return "sha256:" + digest
    return value


def event_type(provider: str | None, headers: dict[str, str], body: bytes) -> str | None:
    """The event type where the named provider puts it (Twilio, Paddle), else None."""
    scheme = SCHEMES.get(PROVIDERS.get(provider or ""))
    if scheme is None or scheme.event_type is None:
        return None
    value = scheme.event_type(headers, body)
    return value[:200] if value else None


def verify_request(
    auth_mode: str,
    provider: str | None,
    config: dict | None,
    headers: dict[str, str],
    body: bytes,
    now: float,
) -> None:
    """Raise VerificationFailed unless the request passes the source's scheme."""
    try:
        scheme = scheme_for(auth_mode, provider)
        if scheme.name == "none":
            return  # explicit: a config stored before it was refused for none changes nothing
        # Keys the scheme does not read are ignored here; missing or bad ones fail closed.
        known = {
            k: v for k, v in (config or {}).items() if k in scheme.fields or k in COMMON_FIELDS
        }
        checked = check_config(auth_mode, provider, known)
    except ConfigError as exc:
        raise VerificationFailed(
            f"the source's verification settings are unusable ({exc}); recreate the source"
        ) from None
    scheme.verify(headers, body, checked, now)
