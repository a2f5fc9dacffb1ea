"""The OpenAPI 3.1 document of the whole API, served at /openapi.json.

A test checks that every route of the app is documented here and every
documented path exists, and schemathesis checks the answers against it.
"""

from __future__ import annotations

from typing import Any

from gethookd import __version__, verify, vocabulary
from gethookd.verify import base as vbase

STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
INT = {"type": "integer"}
NINT = {"type": ["integer", "null"]}
BOOL = {"type": "boolean"}
UUID = {"type": "string", "format": "uuid"}
NUUID = {"type": ["string", "null"], "format": "uuid"}
TIME = {"type": "string", "format": "date-time"}
NTIME = {"type": ["string", "null"], "format": "date-time"}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
# Request maps: PostgreSQL text and jsonb cannot hold NUL.
REQ_STRMAP = {
    "type": "object",
    "propertyNames": {"pattern": "^[^\\u0000]*$"},
    "additionalProperties": {"type": "string", "pattern": "^[^\\u0000]*$"},
}
NSTRMAP = {"type": ["object", "null"], "additionalProperties": {"type": "string"}}

EVENT_STATUS = list(vocabulary.EVENT_STATUSES)
OUTCOMES = list(vocabulary.ATTEMPT_OUTCOMES)
BACKOFF = list(vocabulary.BACKOFFS)


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict:
    props = {**required, **(optional or {})}
    return {"type": "object", "required": list(required), "properties": props}


def arr(item: dict) -> dict:
    return {"type": "array", "items": item}


def envelope(schema: dict) -> dict:
    return obj({"data": schema})


SCHEMAS: dict[str, dict] = {
    "Error": obj({"error": STR}),
    "Health": obj({"status": STR}),
    "Account": obj(
        {"id": UUID, "name": STR, "plan": STR, "created_at": TIME},
        {"email": NSTR, "retention_days": NINT},
    ),
    "APIKey": obj(
        {"id": UUID, "account_id": UUID, "name": STR, "key_prefix": STR, "created_at": TIME},
        {"revoked_at": NTIME},
    ),
    "APIKeyWithSecret": {
        "allOf": [ref("APIKey"), obj({"key": {"type": "string", "pattern": "^hk_"}})]
    },
    "AccountBootstrap": obj({"account": ref("Account"), "api_key": ref("APIKeyWithSecret")}),
    "ProviderPreset": obj(
        {
            "id": STR,
            "name": STR,
            "category": STR,
            "auth_mode": STR,
            "header": STR,
            "description": STR,
            "docs_url": STR,
            "color": STR,
        }
    ),
    "DestinationPreset": obj(
        {
            "id": STR,
            "name": STR,
            "category": STR,
            "auth_type": {"type": "string", "enum": ["none", "bearer", "api_key"]},
            "auth_header": STR,
            "auth_label": STR,
            "url_hint": STR,
            "extra_headers": STRMAP,
            "description": STR,
            "docs_url": STR,
            "color": STR,
        }
    ),
    "Source": obj(
        {
            "id": UUID,
            "account_id": UUID,
            "name": STR,
            "path_token": STR,
            "ingest_url": STR,
            "status": STR,
            "auth_mode": STR,
            "created_at": TIME,
        },
        {"provider": NSTR, "verification_config": NSTRMAP, "custom_domain_id": NUUID},
    ),
    "Destination": obj(
        {
            "id": UUID,
            "account_id": UUID,
            "name": STR,
            "url": STR,
            "timeout_seconds": INT,
            "active": BOOL,
            "created_at": TIME,
        },
        {
            "auth_config": {"type": ["object", "null"]},
            "custom_headers": NSTRMAP,
            "preset": NSTR,
            "signing_secret": {
                "type": ["string", "null"],
                "description": "Masked, except in the create answer.",
            },
            "previous_secret_expires_at": {
                **NTIME,
                "description": "After rotate-secret: until then deliveries also carry a "
                "signature made with the previous secret (null when there is none).",
            },
            "circuit_state": {
                "type": "string",
                "enum": ["closed", "open", "half_open"],
                "description": "open: after CIRCUIT_FAILURE_THRESHOLD failed attempts in a "
                "row its deliveries wait (held, unattempted) until circuit_open_until; then "
                "half_open: one probe delivery is sent, and its success closes the circuit.",
            },
            "circuit_open_until": NTIME,
            "consecutive_failures": INT,
            "failing_since": {
                **NTIME,
                "description": "Start of the current run of failed attempts (null after a "
                "success).",
            },
            "last_success_at": NTIME,
            "last_failure_at": NTIME,
            "disabled_at": {
                **NTIME,
                "description": "Set when the destination was disabled (it answered 410 Gone, "
                "or failed continuously for DESTINATION_DISABLE_AFTER): its deliveries wait "
                "until PATCH active=true re-enables it.",
            },
            "disabled_reason": NSTR,
        },
    ),
    "SecretRotation": obj(
        {"destination_id": UUID, "signing_secret": STR},
        {
            "previous_secret_expires_at": {
                **NTIME,
                "description": "The replaced secret also signs deliveries until then "
                "(SECRET_ROTATION_GRACE).",
            }
        },
    ),
    "RetryPolicy": obj(
        {
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100},
            "backoff": {"type": "string", "enum": BACKOFF},
        }
    ),
    "Route": obj(
        {
            "id": UUID,
            "account_id": UUID,
            "destination_id": UUID,
            "retry_policy": ref("RetryPolicy"),
            "active": BOOL,
            "created_at": TIME,
        },
        {"source_id": NUUID, "event_type_pattern": NSTR},
    ),
    "Event": obj(
        {
            "id": UUID,
            "account_id": UUID,
            "direction": {"type": "string", "enum": list(vocabulary.DIRECTIONS)},
            "received_at": TIME,
            "headers": {"type": "object"},
            "body": STR,
            "status": {"type": "string", "enum": EVENT_STATUS},
            "attempts_count": INT,
            "created_at": TIME,
        },
        {
            "source_id": NUUID,
            "event_type": NSTR,
            "external_event_id": NSTR,
            "next_attempt_at": NTIME,
            "final_state": NSTR,
            "payload_hash": NSTR,
            "created_by": NSTR,
            "replay_of": NUUID,
        },
    ),
    "DeliveryAttempt": obj(
        {
            "id": UUID,
            "event_id": UUID,
            "destination_id": UUID,
            "attempt_number": INT,
            "started_at": TIME,
            "outcome": {"type": "string", "enum": OUTCOMES},
        },
        {
            "finished_at": NTIME,
            "response_status": NINT,
            "response_body": NSTR,
            "error_message": NSTR,
            "latency_ms": NINT,
        },
    ),
    "EventPage": obj(
        {
            "items": arr(ref("Event")),
            "total": {
                **NINT,
                "description": "Every event the filters match; null with include_total=false.",
            },
            "next_cursor": {
                **NSTR,
                "description": "Give it as `cursor` for the next page; null on the last page.",
            },
        }
    ),
    "EventDetail": obj(
        {
            "event": ref("Event"),
            "attempts": arr(ref("DeliveryAttempt")),
            "body_base64": {
                **STR,
                "description": "The body's exact bytes, base64-encoded (event.body is text).",
            },
        }
    ),
    "Accepted": obj({"id": UUID, "status": {"type": "string", "enum": EVENT_STATUS}}),
    "Duplicate": obj(
        {
            "id": {"anyOf": [UUID, {"type": "null"}]},
            "status": {"type": "string", "enum": EVENT_STATUS},
            "duplicate": {"type": "boolean", "const": True},
        }
    ),
    "ReplayResult": obj({"original_event_id": UUID, "replay_event_id": UUID, "status": STR}),
    "EventFilter": {
        "type": "object",
        "description": "The filters given, times in UTC.",
        "additionalProperties": False,
        "properties": {
            "source_id": UUID,
            "destination_id": UUID,
            "status": {"type": "string", "enum": EVENT_STATUS},
            "direction": {"type": "string", "enum": list(vocabulary.DIRECTIONS)},
            "event_type": STR,
            "since": TIME,
            "until": TIME,
        },
    },
    "ReplayDryRun": obj(
        {
            "dry_run": {"type": "boolean", "const": True},
            "matched": {
                **INT,
                "description": "Events the filters match now (with to_destination_id, those "
                "with no route to it are skipped when replayed).",
            },
            "filter": ref("EventFilter"),
        }
    ),
    "ReplayJob": obj(
        {
            "id": UUID,
            "account_id": UUID,
            "state": {
                "type": "string",
                "enum": ["pending", "running", "finished", "failed", "cancelled"],
            },
            "filter": ref("EventFilter"),
            "to_destination_id": NUUID,
            "runner": {"type": "string", "enum": ["background", "cli"]},
            "rate": NINT,
            "total": {**INT, "description": "Events the filters matched when the job was made."},
            "replayed": INT,
            "skipped": {
                **INT,
                "description": "Originals deleted meanwhile, or with no route to "
                "to_destination_id.",
            },
            "error": NSTR,
            "created_at": TIME,
            "started_at": NTIME,
            "finished_at": NTIME,
        }
    ),
    "Stats": obj(
        {
            "by_status": arr(obj({"status": STR, "count": INT})),
            "daily": arr(
                obj(
                    {
                        "date": {"type": "string", "format": "date"},
                        "inbound": INT,
                        "outbound": INT,
                        "delivered": INT,
                        "failed": INT,
                    }
                )
            ),
        }
    ),
    "DestinationStats": obj(
        {
            "destination_id": UUID,
            "attempts": {
                **INT,
                "description": "Finished attempts in the window (succeeded + failed).",
            },
            "succeeded": INT,
            "failed": INT,
            "success_rate_pct": {
                "type": ["number", "null"],
                "description": "100 * succeeded / attempts; null with no attempts.",
            },
            "latency_p50_ms": NINT,
            "latency_p95_ms": NINT,
            "last_error": {
                "oneOf": [
                    {"type": "null"},
                    obj({"at": TIME, "status_code": NINT, "message": STR}),
                ],
                "description": "The latest failed attempt in the window.",
            },
        }
    ),
    "SourceStats": obj(
        {
            "source_id": UUID,
            "events": {**INT, "description": "Events received in the window (not replays)."},
        }
    ),
    "ConsoleSession": obj(
        {
            "account": obj({"id": UUID, "name": STR}),
            "csrf_token": {
                "type": "string",
                "description": "Send as X-CSRF-Token with every POST, PUT, PATCH and DELETE "
                "made with the session cookie.",
            },
            "expires_at": TIME,
        }
    ),
    "PlatformStats": obj(
        {
            "events_processed": INT,
            "events_delivered": INT,
            "delivery_attempts": INT,
            "success_rate_pct": {"type": "number"},
        }
    ),
    "BrandSettings": obj(
        {"id": UUID, "account_id": UUID, "created_at": TIME, "updated_at": TIME},
        {
            "company_name": NSTR,
            "logo_url": NSTR,
            "primary_color": NSTR,
            "support_email": NSTR,
            "docs_title": NSTR,
        },
    ),
    "CustomDomain": obj(
        {
            "id": UUID,
            "account_id": UUID,
            "domain": STR,
            "type": STR,
            "status": STR,
            "tls_status": STR,
            "verification_token": STR,
            "created_at": TIME,
        }
    ),
}


def nullable(schema: dict) -> dict:
    """The contract: an optional field may be omitted or null."""
    if "anyOf" in schema:
        return {"anyOf": [*schema["anyOf"], {"type": "null"}]}
    if "$ref" in schema or "oneOf" in schema:
        return {"oneOf": [schema, {"type": "null"}]}
    kind = schema.get("type", "object")
    kinds = kind if isinstance(kind, list) else [kind]
    widened = {**schema, "type": sorted(set(kinds) | {"null"})}
    if "enum" in schema and None not in schema["enum"]:
        widened["enum"] = [*schema["enum"], None]
    return widened


def req_obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict:
    """A request body: optional fields may also be sent as null."""
    return obj(required, {k: nullable(v) for k, v in (optional or {}).items()})


# Request bodies.
# What Python's str.strip() removes (JSON Schema's \s differs: no \x1c-\x1f or \x85, adds \ufeff).
_PY_SPACE = (
    "\\t\\n\\u000b\\f\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)


def text(max_len: int = 200) -> dict:
    """A string with something in it besides white space (the API strips and rejects empty)."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": max_len,
        "pattern": f"^[^\\u0000]*[^{_PY_SPACE}\\u0000][^\\u0000]*$",
    }


NAME = text()
LINE = {"type": "string", "maxLength": 4096, "pattern": "^[^\\r\\n\\u0000]*$"}
HEADER_NAME = {"type": "string", "pattern": "^[!#$%&'*+\\-.^_`|~0-9A-Za-z]{1,100}$"}
HTTP_URL = {"type": "string", "format": "uri", "maxLength": 2048, "pattern": "^https?://[^/?#]"}
DESTINATION_URL = {
    **HTTP_URL,
    "description": "Its host must be, and resolve to, public addresses only (400 naming the "
    "address otherwise; checked again at each send): loopback, private, link-local, "
    "unique-local, CGNAT, multicast, reserved and cloud metadata addresses are refused in "
    "every spelling unless ALLOWED_DESTINATION_NETWORKS opens them.",
}
EMAIL = {"type": "string", "format": "email", "maxLength": 254}
HEADERS = {
    "type": "object",
    "maxProperties": 50,
    "propertyNames": HEADER_NAME,
    "additionalProperties": LINE,
}
RETRY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "max_attempts": {"type": ["integer", "null"], "minimum": 1, "maximum": 100},
        "backoff": {"type": ["string", "null"], "enum": [*BACKOFF, None]},
    },
}


def _auth_variant(kind: str, required: dict, optional: dict | None = None) -> dict:
    props = {"type": {"const": kind}, **required, **(optional or {})}
    return {
        "type": "object",
        "required": ["type", *required],
        "properties": props,
        "additionalProperties": False,
    }


SCHEMAS["AuthConfig"] = {
    "oneOf": [
        _auth_variant("none", {}),
        _auth_variant("bearer", {"token": {**LINE, "minLength": 1}}),
        _auth_variant("api_key", {"value": {**LINE, "minLength": 1}}, {"header": HEADER_NAME}),
        _auth_variant("basic", {"username": {**LINE, "minLength": 1}}, {"password": LINE}),
    ]
}

# Either Standard Webhooks' whsec_<base64>, or any other secret used as its UTF-8 bytes.
SIGNING_SECRET = {
    "anyOf": [
        {
            "type": "string",
            "minLength": 16,
            "maxLength": 512,
            "pattern": "^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        },
        {**text(512), "minLength": 16, "not": {"pattern": "^whsec_"}},
    ]
}

# verification_config: one JSON Schema per field kind of gethookd.verify.base.
_VLINE = {"type": "string", "maxLength": vbase.MAX_VALUE, "pattern": "^[^\\r\\n\\u0000]*$"}
_VSECRET = {**_VLINE, "minLength": 1}
_B64_TAIL = "(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)"
_WHSEC = f"^whsec_(?:(?:[A-Za-z0-9+/]{{4}})+{_B64_TAIL}?|{_B64_TAIL})$"  # non-empty base64
# 1..86400 as a string of digits (a leading zero is allowed, as the API reads the number).
_SECONDS_TEXT = "^0*(?:[1-9][0-9]{0,3}|[1-7][0-9]{4}|8[0-5][0-9]{3}|86[0-3][0-9]{2}|86400)$"
VERIFY_KINDS: dict[str, dict] = {
    vbase.SECRET: _VSECRET,
    vbase.STANDARD_SECRET: {
        "anyOf": [
            {"type": "string", "maxLength": vbase.MAX_VALUE, "pattern": _WHSEC},
            {**_VSECRET, "not": {"pattern": "^whsec_"}},
        ]
    },
    vbase.USERNAME: {**_VSECRET, "pattern": "^[^:\\r\\n\\u0000]*$"},
    vbase.HEADER: HEADER_NAME,
    vbase.ENCODING: {"type": "string", "enum": list(vbase.ENCODINGS)},
    vbase.ALGORITHM: {"type": "string", "enum": list(vbase.ALGORITHMS)},
    vbase.PREFIX: {**_VLINE, "maxLength": 100},
    vbase.SECONDS: {
        "anyOf": [
            {"type": "integer", "minimum": 1, "maximum": vbase.MAX_TOLERANCE},
            {"type": "string", "maxLength": 12, "pattern": _SECONDS_TEXT},
        ]
    },
}


def _verification_config(scheme: verify.Scheme) -> dict:
    fields = {**scheme.fields, **verify.COMMON_FIELDS}
    return {
        "type": "object",
        "required": [n for n, f in fields.items() if f.required],
        "properties": {n: VERIFY_KINDS[f.kind] for n, f in fields.items()},
        "additionalProperties": False,
    }


def _source_variants() -> list[dict]:
    """One branch per scheme: the auth_mode/provider that choose it, and its config."""
    known = list(verify.PROVIDERS)
    variants = [
        {
            "properties": {
                "auth_mode": {"enum": ["none", None]},
                "verification_config": {
                    "anyOf": [{"type": "null"}, _verification_config(verify.SCHEMES["none"])]
                },
            }
        }
    ]
    for name, scheme in verify.SCHEMES.items():
        if name == "none":
            continue
        providers = [p for p, s in verify.PROVIDERS.items() if s == name]
        if providers:
            selector = {
                "auth_mode": {"enum": [*verify.HMAC_MODES, "provider"]},
                "provider": {"enum": providers},
            }
        elif name == "hmac":
            selector = {
                "auth_mode": {"enum": list(verify.HMAC_MODES)},
                "provider": {"anyOf": [{"type": "null"}, {"not": {"enum": known}}]},
            }
        else:
            selector = {"auth_mode": {"const": name}}
        required = ["auth_mode", *(["provider"] if providers else []), "verification_config"]
        variants.append(
            {
                "required": required,
                "properties": {**selector, "verification_config": _verification_config(scheme)},
            }
        )
    return variants


VERIFICATION_CONFIG_DOC = (
    "What inbound webhooks must prove; checked for the scheme that auth_mode and provider "
    "choose, and refused with 400 naming the field. auth_mode provider, or hmac/shared_secret "
    "with provider " + "|".join(verify.PROVIDERS) + ": {secret, tolerance_seconds? (stripe, "
    "slack, standard_webhooks, paddle; default 300)}. hmac or shared_secret (the same) with "
    "any other provider: {secret, header? (default X-Signature), algorithm? "
    "sha1|sha256|sha512 (default sha256), encoding? hex|base64 (default hex), prefix? (e.g. "
    "sha256=)}. basic: {username, password}. bearer: {token}. api_key: {header, value}. "
    "none: nothing. Every mode also takes dedup_header?: the request header holding the "
    "sender's delivery id to deduplicate on (providers' own ids are known without it). "
    "Secrets are stored encrypted and masked in answers. An ingest request that fails "
    "verification is answered 401 and not stored."
)

BODIES: dict[str, dict] = {
    "Register": req_obj(
        {
            "email": EMAIL,
            "password": {
                "type": "string",
                "minLength": 8,
                "maxLength": 1024,
                "pattern": "^[^\\u0000]*$",
            },
        },
        {"name": NAME},
    ),
    "Login": req_obj({"email": text(254), "password": text(1024)}),
    "ConsoleSignIn": {
        "oneOf": [
            {
                **req_obj({"email": text(254), "password": text(1024)}),
                "additionalProperties": False,
            },
            {**req_obj({"api_key": text(256)}), "additionalProperties": False},
        ]
    },
    "AccountCreate": req_obj({"name": NAME}),
    "APIKeyCreate": req_obj({}, {"name": NAME}),
    "SourceCreate": {
        **req_obj(
            {"name": NAME},
            {
                "auth_mode": {
                    "type": "string",
                    "enum": list(vocabulary.SOURCE_AUTH_MODES),
                },
                "provider": {
                    **text(64),
                    "description": "For auth_mode provider: " + ", ".join(verify.PROVIDERS),
                },
                "verification_config": {
                    "type": "object",
                    "description": VERIFICATION_CONFIG_DOC,
                },
            },
        ),
        "anyOf": _source_variants(),
    },
    "DestinationCreate": req_obj(
        {"name": NAME, "url": DESTINATION_URL},
        {
            "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 300},
            "signing_secret": SIGNING_SECRET,
            "auth_config": ref("AuthConfig"),
            "custom_headers": HEADERS,
            "preset": text(64),
        },
    ),
    "DestinationPatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": NAME,
            "url": DESTINATION_URL,
            "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 300},
            "active": {
                **BOOL,
                "description": "false pauses (deliveries wait held); true resumes, and also "
                "re-enables a disabled destination and closes its circuit, releasing the "
                "deliveries held for it.",
            },
            "auth_config": nullable(ref("AuthConfig")),
            "custom_headers": nullable(HEADERS),
        },
    },
    "SecretRotate": req_obj({}, {"signing_secret": SIGNING_SECRET, "secret": SIGNING_SECRET}),
    "RouteCreate": req_obj(
        {"destination_id": UUID},
        {"source_id": UUID, "event_type_pattern": NAME, "retry_policy": RETRY},
    ),
    "RoutePatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "active": BOOL,
            "event_type_pattern": nullable(NAME),
            "retry_policy": nullable(RETRY),
        },
    },
    "BulkReplay": {
        **req_obj(
            {},
            {
                "source_id": UUID,
                "destination_id": {
                    **UUID,
                    "description": "Events with a delivery to this destination.",
                },
                "status": {"type": "string", "enum": EVENT_STATUS},
                "direction": {"type": "string", "enum": list(vocabulary.DIRECTIONS)},
                "event_type": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "pattern": "^[^\\u0000]*$",
                },
                "since": {**TIME, "description": "RFC 3339: created at or after it."},
                "until": {**TIME, "description": "RFC 3339: created before it."},
                "dry_run": {
                    **BOOL,
                    "description": "Only count what would be replayed (answered 200).",
                },
                "to_destination_id": {
                    **UUID,
                    "description": "Replay to this destination only (through the original's "
                    "route to it), not to every route.",
                },
                "rate": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1_000_000,
                    "description": "Events replayed per second at most.",
                },
            },
        ),
        "additionalProperties": False,
    },
    "OutboundPublish": req_obj(
        {"payload": STR},
        {"event_type": NAME, "external_event_id": text(255)},
    ),
    "BrandSettingsUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "company_name": nullable(NAME),
            "logo_url": nullable(HTTP_URL),
            "primary_color": {"type": ["string", "null"], "pattern": "^#[0-9A-Fa-f]{6}$"},
            "support_email": nullable(EMAIL),
            "docs_title": nullable(NAME),
        },
    },
    "CustomDomainCreate": req_obj(
        {
            "domain": {
                "type": "string",
                "maxLength": 253,
                "pattern": ("^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63}$"),
            }
        },
        {
            "type": {
                "type": "string",
                "enum": [*vocabulary.DOMAIN_TYPES, *vocabulary.DOMAIN_TYPE_ALIASES],
                "description": "webhook (the GetHook SDK's name) is stored as ingest.",
            }
        },
    ),
}


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": ref("Error")}},
    }


def _ok(status: str, schema: dict | None, description: str) -> dict:
    if schema is None:
        return {status: {"description": description}}
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": envelope(schema)}},
        }
    }


def op(
    summary: str,
    status: str,
    schema: dict | None,
    *,
    auth: bool = True,
    body: str | None = None,
    body_required: bool = True,
    params: list[dict] | None = None,
    errors: tuple[str, ...] = (),
    error_texts: dict[str, str] | None = None,
) -> dict:
    responses = _ok(status, schema, summary)
    codes = set(errors)
    if auth:
        codes.add("401")
    if body:
        codes |= {"400", "413"}
    if params:
        codes.add("400")
    texts = {
        "400": "The request is malformed; the error names the field.",
        "401": "Missing, invalid or revoked API key.",
        "404": "No such object in this account.",
        "403": "Sign-up is closed on this gateway (SIGNUP=closed).",
        "409": "Conflicts with an existing object.",
        "413": "The body is too large.",
        "503": "The database is not reachable.",
        **(error_texts or {}),
    }
    for code in sorted(codes):
        responses[code] = _error(texts[code])
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if auth:
        operation["security"] = [{"bearerAuth": []}, {"sessionCookie": []}]
    else:
        operation["security"] = []
    if body:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    if params:
        operation["parameters"] = params
    return operation


def path_id(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": UUID}


def query(name: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema}


PAGE = [
    query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 25}),
    query("offset", {"type": "integer", "minimum": 0, "maximum": 10_000_000, "default": 0}),
]

HOURS = query("hours", {"type": "integer", "minimum": 1, "maximum": 720, "default": 24})
# The event lists' paging and filters (gethookd/services/event_filter.py).
_RFC3339 = {"type": "string", "format": "date-time"}
EVENT_LIST = [
    *PAGE,
    {
        **query("cursor", {"type": "string", "pattern": "^[0-9]{1,17}_[0-9a-f]{32}$"}),
        "description": "Keyset paging: the next_cursor of the previous page (an offset "
        "then skips rows after it). "
        "Stays fast at any depth, unlike offset.",
    },
    {
        **query("include_total", {"type": "string", "enum": ["true", "false"]}),
        "description": "false skips counting every match (total is then null): the fast "
        "choice over millions of events.",
    },
    {
        **query("destination_id", UUID),
        "description": "Events with a delivery to this destination.",
    },
    query(
        "event_type",
        {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\u0000]*$"},
    ),
    {
        **query("since", _RFC3339),
        "description": "RFC 3339 date-time: created at or after it.",
    },
    {**query("until", _RFC3339), "description": "RFC 3339 date-time: created before it."},
]

_INGEST = op(
    "Receive a provider's webhook",
    "202",
    ref("Accepted"),
    auth=False,
    errors=("401", "404", "413"),
    error_texts={
        "401": "The webhook failed the source's verification (signature, timestamp "
        "or credentials); nothing was stored. The error says what was wrong."
    },
)

PATHS: dict[str, dict] = {
    "/openapi.json": {
        "get": {
            "summary": "This OpenAPI document",
            "security": [],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/docs": {
        "get": {
            "summary": "API reference for a browser (no external assets)",
            "security": [],
            "responses": {
                "200": {"description": "HTML", "content": {"text/html": {"schema": STR}}},
                "301": {"description": "From /docs/: to /docs, where the page's links resolve"},
            },
        }
    },
    "/healthz": {"get": op("Liveness (no database)", "200", ref("Health"), auth=False)},
    "/readyz": {
        "get": op(
            "Readiness: the database answers", "200", ref("Health"), auth=False, errors=("503",)
        )
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics, added up across every API and delivery process",
            "description": "Text exposition format. Open unless METRICS_TOKEN is set; then "
            "it needs Authorization: Bearer <METRICS_TOKEN>.",
            "security": [],
            "responses": {
                "200": {
                    "description": "Prometheus text",
                    "content": {"text/plain": {"schema": STR}},
                },
                "401": {"description": "METRICS_TOKEN is set and was not given"},
                "503": {"description": "The database is unavailable"},
            },
        }
    },
    "/v1/auth/register": {
        "post": op(
            "Create an account with a login",
            "201",
            ref("AccountBootstrap"),
            auth=False,
            body="Register",
            errors=("403", "409"),
            error_texts={"409": "The email is taken; log in with POST /v1/auth/login."},
        )
    },
    "/v1/auth/login": {
        "post": op(
            "Log in; answers a new API key",
            "200",
            ref("AccountBootstrap"),
            auth=False,
            body="Login",
            errors=("401",),
        )
    },
    "/v1/accounts": {
        "post": op(
            "Create an account (no login)",
            "201",
            ref("AccountBootstrap"),
            auth=False,
            body="AccountCreate",
            errors=("403",),
        )
    },
    "/v1/api-keys": {
        "get": op("List API keys", "200", arr(ref("APIKey"))),
        "post": op(
            "Create an API key (the key is shown once)",
            "201",
            ref("APIKeyWithSecret"),
            body="APIKeyCreate",
            body_required=False,
        ),
    },
    "/v1/api-keys/{key_id}": {
        "delete": op("Revoke an API key", "204", None, params=[path_id("key_id")], errors=("404",))
    },
    "/v1/provider-presets": {
        "get": op("Provider presets (no auth)", "200", arr(ref("ProviderPreset")), auth=False)
    },
    "/v1/sources": {
        "get": op("List sources", "200", arr(ref("Source"))),
        "post": op("Create a source", "201", ref("Source"), body="SourceCreate"),
    },
    "/v1/sources/{source_id}": {
        "get": op(
            "Get a source", "200", ref("Source"), params=[path_id("source_id")], errors=("404",)
        ),
        "delete": op(
            "Delete a source", "204", None, params=[path_id("source_id")], errors=("404",)
        ),
    },
    "/v1/destination-presets": {
        "get": op("Destination presets (no auth)", "200", arr(ref("DestinationPreset")), auth=False)
    },
    "/v1/destinations": {
        "get": op("List destinations", "200", arr(ref("Destination"))),
        "post": op("Create a destination", "201", ref("Destination"), body="DestinationCreate"),
    },
    "/v1/destinations/{dest_id}": {
        "get": op(
            "Get a destination",
            "200",
            ref("Destination"),
            params=[path_id("dest_id")],
            errors=("404",),
        ),
        "patch": op(
            "Change a destination",
            "200",
            ref("Destination"),
            body="DestinationPatch",
            params=[path_id("dest_id")],
            errors=("404",),
        ),
        "delete": op(
            "Delete a destination", "204", None, params=[path_id("dest_id")], errors=("404",)
        ),
    },
    "/v1/destinations/{dest_id}/rotate-secret": {
        "post": op(
            "Rotate the signing secret (shown once)",
            "200",
            ref("SecretRotation"),
            body="SecretRotate",
            body_required=False,
            params=[path_id("dest_id")],
            errors=("404",),
        )
    },
    "/v1/routes": {
        "get": op("List routes", "200", arr(ref("Route"))),
        "post": op("Create a route", "201", ref("Route"), body="RouteCreate", errors=("404",)),
    },
    "/v1/routes/{route_id}": {
        "patch": op(
            "Change a route",
            "200",
            ref("Route"),
            body="RoutePatch",
            params=[path_id("route_id")],
            errors=("404",),
        ),
        "delete": op("Delete a route", "204", None, params=[path_id("route_id")], errors=("404",)),
    },
    "/ingest/{token}": {
        "post": {
            **_INGEST,
            "responses": {
                **_INGEST["responses"],
                **_ok(
                    "200",
                    ref("Duplicate"),
                    "A repeat of a webhook already stored (same provider delivery id within "
                    "DEDUP_WINDOW): the first event's id; nothing stored or queued.",
                ),
            },
            "description": (
                "Verified against the source's auth_mode, provider and verification_config "
                "before anything is stored; a request that fails is answered 401 and dropped. "
                "A verified repeat of a delivery the source already took (the provider's own "
                "id, or verification_config.dedup_header) is answered 200 with the first "
                "event's id and duplicate: true."
            ),
            "parameters": [{"name": "token", "in": "path", "required": True, "schema": STR}],
            "requestBody": {
                "required": False,
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            },
        }
    },
    "/v1/events": {
        "get": op(
            "List events, newest first",
            "200",
            ref("EventPage"),
            params=[
                *EVENT_LIST,
                query("source_id", UUID),
                query("status", {"type": "string", "enum": EVENT_STATUS}),
                query("direction", {"type": "string", "enum": list(vocabulary.DIRECTIONS)}),
            ],
        )
    },
    "/v1/events/replay": {
        "post": {
            **op(
                "Replay every event the filters match (a background job)",
                "202",
                ref("ReplayJob"),
                body="BulkReplay",
                errors=("404",),
                error_texts={"404": "to_destination_id is not a destination of this account."},
            ),
            "description": "Creates a replay job that a delivery process runs in bounded "
            "batches (follow it at /v1/event-replays/{job_id}); each event is replayed as "
            "POST /v1/events/{event_id}/replay does, at most once per job. With dry_run: "
            "only the count, answered 200.",
        }
    },
    "/v1/event-replays/{job_id}": {
        "get": op(
            "A bulk replay job and its progress",
            "200",
            ref("ReplayJob"),
            params=[path_id("job_id")],
            errors=("404",),
        ),
        "delete": op(
            "Cancel a bulk replay job (what it replayed stays replayed)",
            "200",
            ref("ReplayJob"),
            params=[path_id("job_id")],
            errors=("404",),
        ),
    },
    "/v1/events/{event_id}": {
        "get": op(
            "Get an event with its attempts",
            "200",
            ref("EventDetail"),
            params=[path_id("event_id")],
            errors=("404",),
        )
    },
    "/v1/events/{event_id}/replay": {
        "post": op(
            "Replay an event",
            "202",
            ref("ReplayResult"),
            params=[path_id("event_id")],
            errors=("404",),
        )
    },
    "/v1/outbound-events": {
        "get": op(
            "List outbound events, newest first",
            "200",
            ref("EventPage"),
            params=[*EVENT_LIST, query("status", {"type": "string", "enum": EVENT_STATUS})],
        ),
        "post": op(
            "Publish an outbound event (idempotent on external_event_id)",
            "201",
            ref("Accepted"),
            body="OutboundPublish",
        ),
    },
    "/v1/outbound-events/{event_id}": {
        "get": op(
            "Get an outbound event with its attempts",
            "200",
            ref("EventDetail"),
            params=[path_id("event_id")],
            errors=("404",),
        )
    },
    "/v1/outbound-events/{event_id}/replay": {
        "post": op(
            "Replay an outbound event",
            "202",
            ref("ReplayResult"),
            params=[path_id("event_id")],
            errors=("404",),
        )
    },
    "/v1/stats": {"get": op("Event counts by status and by day (30 days)", "200", ref("Stats"))},
    "/v1/destination-stats": {
        "get": op(
            "Each destination's attempts, success rate, latency and last error over the last hours",
            "200",
            arr(ref("DestinationStats")),
            params=[HOURS],
        )
    },
    "/v1/source-stats": {
        "get": op(
            "Events each source received over the last hours",
            "200",
            arr(ref("SourceStats")),
            params=[HOURS],
        )
    },
    "/v1/console/session": {
        "post": op(
            "Sign in to the console (email and password, or an API key)",
            "201",
            ref("ConsoleSession"),
            auth=False,
            body="ConsoleSignIn",
            errors=("401", "415", "429"),
            error_texts={
                "401": "Wrong email or password, or an invalid API key.",
                "415": "The body is not sent as application/json.",
                "429": "Too many failed sign-ins for this email or from this address; "
                "Retry-After says when to try again.",
            },
        )
        | {
            "description": "Sets the cookie gethookd_session (HttpOnly, SameSite=Strict, "
            "Path=/, Max-Age=CONSOLE_SESSION_TTL; Secure when BASE_URL is https or the "
            "request came with X-Forwarded-Proto: https). The cookie then authenticates "
            "every /v1 route in place of Authorization."
        },
        "get": op(
            "The console session of this cookie, with its CSRF token",
            "200",
            ref("ConsoleSession"),
            error_texts={"401": "No console session, or it expired or was signed out."},
        )
        | {"security": [{"sessionCookie": []}]},
        "delete": op(
            "Sign out: the session is deleted on the server and the cookie cleared",
            "204",
            None,
            errors=("403",),
            error_texts={
                "401": "No console session, or it expired or was signed out.",
                "403": "X-CSRF-Token is missing or wrong.",
            },
        )
        | {"security": [{"sessionCookie": []}]},
    },
    "/v1/platform-stats": {
        "get": op("Gateway-wide totals", "200", ref("PlatformStats"), auth=False)
    },
    "/v1/brand-settings": {
        "get": op("Brand settings", "200", ref("BrandSettings")),
        "post": op(
            "Change brand settings", "200", ref("BrandSettings"), body="BrandSettingsUpdate"
        ),
    },
    "/v1/custom-domains": {
        "get": op("List custom domains", "200", arr(ref("CustomDomain"))),
        "post": op(
            "Add a custom domain",
            "201",
            ref("CustomDomain"),
            body="CustomDomainCreate",
            errors=("409",),
        ),
    },
}

# A dry run answers 200 with the count instead of 202 with a job.
PATHS["/v1/events/replay"]["post"]["responses"].update(
    _ok("200", ref("ReplayDryRun"), "dry_run: how many events would be replayed")
)


def document(base_url: str | None = None) -> dict:
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "gethookd (GetHook API)",
            "version": __version__,
            "description": (
                "Self-hosted webhook gateway speaking the GetHook API. Successes are wrapped "
                'in {"data": ...}; errors are {"error": "message"}.'
            ),
        },
        "paths": PATHS,
        "components": {
            "schemas": {**SCHEMAS, **BODIES},
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "hk_ API key; a bare `Authorization: hk_...` is taken too",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "gethookd_session",
                    "description": "The console's session (POST /v1/console/session). Taken "
                    "by every authenticated route when no Authorization header is sent; with "
                    "it, POST, PUT, PATCH and DELETE also need the header X-CSRF-Token (403 "
                    "without it or with a wrong one).",
                },
            },
        },
    }
    if base_url:
        doc["servers"] = [{"url": base_url}]
    return doc
