-- Secret rotation with overlap: after rotate-secret the previous signing secret (sealed
-- with AAD destinations.previous_signing_secret:<id>) still signs deliveries until
-- previous_secret_expires_at, so receivers can move to the new secret without a gap.
ALTER TABLE destinations
    ADD COLUMN previous_signing_secret_enc text,
    ADD COLUMN previous_secret_expires_at timestamptz;
