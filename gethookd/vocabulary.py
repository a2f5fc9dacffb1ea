"""The contract's enumerations, named once for the services, the API and its OpenAPI document.

The database's CHECK constraints (migrations/) hold the same lists.
"""

EVENT_STATUSES = (
    "received",
    "accepted",
    "queued",
    "delivering",
    "delivered",
    "retry_scheduled",
    "dead_letter",
    "replayed",
)
DIRECTIONS = ("inbound", "outbound")
ATTEMPT_OUTCOMES = (
    "pending",
    "success",
    "timeout",
    "network_error",
    "http_4xx",
    "http_5xx",
    "cancelled",
)
BACKOFFS = ("exponential", "linear", "fixed")
# shared_secret: GetHook's name for hmac (its SDKs offer only none and shared_secret).
SOURCE_AUTH_MODES = ("none", "hmac", "shared_secret", "basic", "bearer", "api_key", "provider")
DESTINATION_AUTH_TYPES = ("none", "bearer", "api_key", "basic")
DOMAIN_TYPES = ("ingest", "portal", "api", "docs")
# The GetHook SDK's custom-domain types (webhook, docs, portal), accepted next to ours:
# `webhook` is the host providers post to, which gethookd calls `ingest`, and is stored so.
DOMAIN_TYPE_ALIASES = {"webhook": "ingest"}
