"""Inbound verification: one module per scheme, one interface, one registry.

Every scheme module has NAME, FIELDS (its verification_config keys) and
`verify(headers, body, config, now)`, which returns or raises VerificationFailed.
A source's auth_mode and provider choose the scheme; `check_config` validates a config
for it when the source is created, and again before use at ingest (rows written before
validation existed fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gethookd.verify import (
    api_key,
    basic,
    bearer,
    generic,
    github,
    none,
    shopify,
    slack,
    standard,
    stripe,
)
from gethookd.verify.base import ConfigError, Field, VerificationFailed, check_field

__all__ = [
    "ConfigError",
    "Field",
    "Scheme",
    "VerificationFailed",
    "check_config",
    "credential_headers",
    "scheme_for",
    "verify_request",
]


@dataclass(frozen=True)
class Scheme:
    name: str
    fields: dict[str, Field]
    verify: Callable[[dict[str, str], bytes, dict, float], None]


def _scheme(module) -> Scheme:
    return Scheme(module.NAME, module.FIELDS, module.verify)


SCHEMES = {
    m.NAME: _scheme(m)
    for m in (none, generic, basic, bearer, api_key, stripe, github, shopify, slack, standard)
}
# provider field -> scheme, for auth_mode provider (and hmac with a provider named here).
PROVIDERS = {
    "stripe": "stripe",
    "github": "github",
    "shopify": "shopify",
    "slack": "slack",
    "standard_webhooks": "standard_webhooks",
    "svix": "standard_webhooks",
}
# auth_mode -> scheme, for the modes that do not depend on the provider.
MODES = {"none": "none", "hmac": "hmac", "basic": "basic", "bearer": "bearer", "api_key": "api_key"}


def scheme_for(auth_mode: str, provider: str | None) -> Scheme:
    if auth_mode == "provider":
        if provider not in PROVIDERS:
            raise ConfigError(
                f"provider must be one of: {', '.join(PROVIDERS)} for auth_mode provider"
                " (or use auth_mode hmac with verification_config.header for another provider)"
            )
        return SCHEMES[PROVIDERS[provider]]
    if auth_mode == "hmac" and provider in PROVIDERS:
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
    if scheme.name == "none":
        if config:
            raise ConfigError(
                "verification_config is not used with auth_mode none; choose an auth_mode "
                "(hmac, basic, bearer, api_key or provider) or leave verification_config out"
            )
        return {}
    label = _label(auth_mode, provider, scheme)
    unknown = sorted(set(config) - set(scheme.fields))
    if unknown:
        raise ConfigError(
            f"verification_config for {label} takes no {', '.join(unknown)}; "
            f"allowed: {', '.join(scheme.fields)}"
        )
    checked = {}
    for name, field in scheme.fields.items():
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
    return {name for name, field in scheme.fields.items() if field.shown}


def credential_headers(auth_mode: str, config: dict) -> set[str]:
    """Lower-case names of request headers that carry a credential meant for the gateway."""
    if auth_mode == "api_key" and config.get("header"):
        return {config["header"].lower()}
    return set()


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
        known = {k: v for k, v in (config or {}).items() if k in scheme.fields}
        checked = check_config(auth_mode, provider, known)
    except ConfigError as exc:
        raise VerificationFailed(
            f"the source's verification settings are unusable ({exc}); recreate the source"
        ) from None
    scheme.verify(headers, body, checked, now)
