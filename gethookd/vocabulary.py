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
SOURCE_AUTH_MODES = ("none", "hmac", "basic", "bearer", "api_key", "provider")
DESTINATION_AUTH_TYPES = ("none", "bearer", "api_key", "basic")
DOMAIN_TYPES = ("ingest", "portal", "api")
