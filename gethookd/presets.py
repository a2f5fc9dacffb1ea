"""The built-in provider and destination presets the GetHook clients list."""

from __future__ import annotations

PROVIDER_PRESETS: tuple[dict, ...] = (
    {
        "id": "stripe",
        "name": "Stripe",
        "category": "payments",
        "auth_mode": "provider",
        "header": "Stripe-Signature",
        "description": (
            "Stripe events signed with the endpoint's whsec_ secret "
            "(verification_config.secret; timestamps older than 5 minutes are refused)."
        ),
        "docs_url": "https://docs.stripe.com/webhooks#verify-events",
        "color": "#635BFF",
    },
    {
        "id": "github",
        "name": "GitHub",
        "category": "developer",
        "auth_mode": "provider",
        "header": "X-Hub-Signature-256",
        "description": (
            "Repository and organisation events, sha256= HMAC-SHA256 of the body "
            "(verification_config.secret: the webhook's secret)."
        ),
        "docs_url": "https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries",
        "color": "#24292F",
    },
    {
        "id": "shopify",
        "name": "Shopify",
        "category": "commerce",
        "auth_mode": "provider",
        "header": "X-Shopify-Hmac-Sha256",
        "description": (
            "Store events, base64 HMAC-SHA256 of the body "
            "(verification_config.secret: the app's client secret)."
        ),
        "docs_url": "https://shopify.dev/docs/apps/build/webhooks/subscribe/https",
        "color": "#95BF47",
    },
    {
        "id": "slack",
        "name": "Slack",
        "category": "communication",
        "auth_mode": "provider",
        "header": "X-Slack-Signature",
        "description": (
            "Events API requests signed with the app's signing secret "
            "(verification_config.secret; X-Slack-Request-Timestamp within 5 minutes)."
        ),
        "docs_url": "https://api.slack.com/authentication/verifying-requests-from-slack",
        "color": "#4A154B",
    },
    {
        "id": "standard_webhooks",
        "name": "Standard Webhooks / Svix",
        "category": "developer",
        "auth_mode": "provider",
        "header": "webhook-signature",
        "description": (
            "Any sender following Standard Webhooks (Svix, gethookd itself): webhook-id, "
            "webhook-timestamp and webhook-signature, keyed with the whsec_ secret "
            "(verification_config.secret; timestamps within 5 minutes)."
        ),
        "docs_url": "https://www.standardwebhooks.com/",
        "color": "#0EA5E9",
    },
    {
        "id": "twilio",
        "name": "Twilio",
        "category": "communication",
        "auth_mode": "provider",
        "header": "X-Twilio-Signature",
        "description": (
            "Messaging and voice status callbacks, base64 HMAC-SHA1 of the ingest URL and the "
            "sorted form parameters, or of the URL with bodySHA256 for JSON "
            "(verification_config.secret: the account's auth token)."
        ),
        "docs_url": "https://www.twilio.com/docs/usage/webhooks/webhooks-security",
        "color": "#F22F46",
    },
    {
        "id": "paddle",
        "name": "Paddle",
        "category": "payments",
        "auth_mode": "provider",
        "header": "Paddle-Signature",
        "description": (
            'Paddle Billing notifications, ts=...;h1=<hex HMAC-SHA256 of "<ts>:<body>"> '
            "(verification_config.secret: the destination's secret key; timestamps within "
            "5 minutes)."
        ),
        "docs_url": "https://developer.paddle.com/webhooks/signature-verification",
        "color": "#FDDD35",
    },
    {
        "id": "generic_hmac",
        "name": "Generic HMAC (SHA-1, SHA-256, SHA-512)",
        "category": "other",
        "auth_mode": "hmac",
        "header": "X-Signature",
        "description": (
            "Any provider that signs the body with a shared secret: verification_config "
            "secret, header (default X-Signature), algorithm sha1|sha256|sha512 (default "
            "sha256), encoding hex|base64 (default hex), prefix (e.g. sha256=). "
            "auth_mode shared_secret is the same."
        ),
        "docs_url": "https://github.com/gethook/gethookd#inbound-verification",
        "color": "#6B7280",
    },
    {
        "id": "generic",
        "name": "Generic webhook",
        "category": "other",
        "auth_mode": "none",
        "header": "",
        "description": (
            "Any provider; nothing verified. For a provider that signs with an HMAC, "
            "use auth_mode hmac with verification_config secret, header, algorithm, encoding, "
            "prefix."
        ),
        "docs_url": "https://github.com/gethook/gethookd#readme",
        "color": "#6B7280",
    },
)

DESTINATION_PRESETS: tuple[dict, ...] = (
    {
        "id": "webhook",
        "name": "Generic HTTPS endpoint",
        "category": "other",
        "auth_type": "none",
        "auth_header": "",
        "auth_label": "",
        "url_hint": "https://api.example.com/webhooks",
        "extra_headers": {},
        "description": "POST each event to your own endpoint, signed with Standard Webhooks.",
        "docs_url": "https://www.standardwebhooks.com/",
        "color": "#6B7280",
    },
    {
        "id": "bearer_api",
        "name": "API with bearer token",
        "category": "other",
        "auth_type": "bearer",
        "auth_header": "Authorization",
        "auth_label": "Bearer token",
        "url_hint": "https://api.example.com/events",
        "extra_headers": {},
        "description": "An endpoint that expects Authorization: Bearer <token>.",
        "docs_url": "https://datatracker.ietf.org/doc/html/rfc6750",
        "color": "#2563EB",
    },
    {
        "id": "slack_incoming",
        "name": "Slack incoming webhook",
        "category": "communication",
        "auth_type": "none",
        "auth_header": "",
        "auth_label": "",
        "url_hint": "https://hooks.slack.com/services/T000/B000/XXXX",
        "extra_headers": {},
        "description": "Post JSON messages into a Slack channel.",
        "docs_url": "https://api.slack.com/messaging/webhooks",
        "color": "#4A154B",
    },
    {
        "id": "api_key_header",
        "name": "API with key header",
        "category": "other",
        "auth_type": "api_key",
        "auth_header": "X-API-Key",
        "auth_label": "API key",
        "url_hint": "https://api.example.com/ingest",
        "extra_headers": {},
        "description": "An endpoint that expects an API key in a header.",
        "docs_url": "https://swagger.io/docs/specification/authentication/api-keys/",
        "color": "#059669",
    },
)
