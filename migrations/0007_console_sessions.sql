-- The operator console (issue 11): browser sessions, the sign-in rate limit, and the indexes
-- behind its per-destination and per-source figures.
--
-- A session row holds only the SHA-256 of its cookie value (the value carries 256 random
-- bits, as an API key does); the CSRF token is derived from the cookie value by HMAC, so
-- neither can be read back from the database. Sessions end at expires_at (absolute, set from
-- CONSOLE_SESSION_TTL) or when deleted by sign-out.
CREATE TABLE console_sessions (
    token_hash text PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_sessions_account ON console_sessions (account_id);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

-- One row per failed sign-in, counted per email and per client address over a window, so
-- the limit holds across every API process. Rows older than the window are deleted a few
-- at a time by later failures.
CREATE TABLE console_signin_failures (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text,
    address text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_signin_failures_email ON console_signin_failures (email, failed_at)
    WHERE email IS NOT NULL;
CREATE INDEX console_signin_failures_address ON console_signin_failures (address, failed_at);
CREATE INDEX console_signin_failures_at ON console_signin_failures (failed_at);

-- Destination figures over the last hours: a destination's finished attempts by time, with
-- what the figures need, so they are read from the index alone. Partial, so opening an attempt
-- (a pending row) costs the delivery path nothing here; only recording its outcome does.
CREATE INDEX delivery_attempts_destination_started ON delivery_attempts
    (destination_id, started_at) INCLUDE (outcome, latency_ms)
    WHERE outcome <> 'pending';
