-- The tables the GetHook API and the delivery queue need.
-- gen_random_uuid() is built in since PostgreSQL 13.

CREATE TABLE accounts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    email text UNIQUE,
    password_hash text,
    plan text NOT NULL DEFAULT 'self_hosted',
    retention_days integer,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name text NOT NULL,
    key_prefix text NOT NULL,
    key_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_account ON api_keys (account_id, created_at);

CREATE TABLE sources (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name text NOT NULL,
    path_token text NOT NULL UNIQUE,
    status text NOT NULL DEFAULT 'active',
    auth_mode text NOT NULL DEFAULT 'none',
    provider text,
    verification_config_enc text,
    custom_domain_id uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sources_account ON sources (account_id, created_at);

CREATE TABLE destinations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name text NOT NULL,
    url text NOT NULL,
    timeout_seconds integer NOT NULL DEFAULT 30,
    active boolean NOT NULL DEFAULT true,
    signing_secret_enc text,
    auth_config_enc text,
    custom_headers jsonb,
    preset text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX destinations_account ON destinations (account_id, created_at);

CREATE TABLE routes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    source_id uuid REFERENCES sources (id) ON DELETE CASCADE,
    destination_id uuid NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    event_type_pattern text,
    max_attempts integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    backoff text NOT NULL DEFAULT 'exponential'
        CHECK (backoff IN ('exponential', 'linear', 'fixed')),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX routes_account ON routes (account_id, created_at);
CREATE INDEX routes_source ON routes (source_id) WHERE active;

CREATE TABLE events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    direction text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    source_id uuid REFERENCES sources (id) ON DELETE SET NULL,
    event_type text,
    external_event_id text,
    received_at timestamptz NOT NULL DEFAULT now(),
    headers jsonb NOT NULL DEFAULT '{}',
    body bytea NOT NULL,
    content_type text,
    status text NOT NULL CHECK (status IN ('received', 'accepted', 'queued', 'delivering',
        'delivered', 'retry_scheduled', 'dead_letter', 'replayed')),
    attempts_count integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    final_state text,
    payload_hash text,
    created_by text,
    replay_of uuid REFERENCES events (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_account_created ON events (account_id, created_at DESC, id DESC);
CREATE INDEX events_account_source ON events (account_id, source_id, created_at DESC);
CREATE UNIQUE INDEX events_outbound_external_id ON events (account_id, external_event_id)
    WHERE direction = 'outbound' AND external_event_id IS NOT NULL AND replay_of IS NULL;

-- One row per (event, destination): the unit the workers claim.
CREATE TABLE deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    destination_id uuid NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'in_flight', 'succeeded', 'dead', 'cancelled')),
    attempt_count integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    backoff text NOT NULL DEFAULT 'exponential',
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_token uuid,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, destination_id)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_expires_at) WHERE status = 'in_flight';
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE TABLE delivery_attempts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    delivery_id uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    destination_id uuid NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    attempt_number integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    response_status integer,
    response_body text,
    error_message text,
    latency_ms integer,
    outcome text NOT NULL DEFAULT 'pending' CHECK (outcome IN ('pending', 'success', 'timeout',
        'network_error', 'http_4xx', 'http_5xx', 'cancelled'))
);
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id, started_at);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id) WHERE outcome = 'pending';
