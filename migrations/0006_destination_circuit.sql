-- A destination's health: a circuit breaker that stops sending to a failing destination
-- (its deliveries wait 'held', attempts not burned), one probe after a cool-down, and
-- auto-disable after failing continuously for DESTINATION_DISABLE_AFTER (or on 410 Gone).
--
-- circuit_state: 'closed' (sending), 'open' (held until circuit_open_until), 'half_open'
-- (one probe delivery, circuit_probe_id, may be sent; its outcome closes or re-opens).
-- circuit_opens counts the re-opens in a row and grows the cool-down. The bookkeeping is
-- done by finish_deliveries (gethookd/sql/queue.sql), the cool-down transition by
-- release_circuit_probes, run by every delivery process (conditional and SKIP LOCKED).
ALTER TABLE destinations
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN circuit_state text NOT NULL DEFAULT 'closed'
        CHECK (circuit_state IN ('closed', 'open', 'half_open')),
    ADD COLUMN circuit_open_until timestamptz,
    ADD COLUMN circuit_opens integer NOT NULL DEFAULT 0,
    ADD COLUMN circuit_probe_id uuid,
    ADD COLUMN failing_since timestamptz,
    ADD COLUMN last_success_at timestamptz,
    ADD COLUMN last_failure_at timestamptz,
    ADD COLUMN disabled_at timestamptz,
    ADD COLUMN disabled_reason text;

-- The cool-down step looks only at destinations whose circuit is not closed.
CREATE INDEX destinations_circuit ON destinations (circuit_open_until)
    WHERE circuit_state <> 'closed';

-- Paused, disabled, or circuit not closed: deliveries wait 'held'.
CREATE OR REPLACE FUNCTION destination_accepts_deliveries(dst destinations) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT dst.active AND dst.disabled_at IS NULL AND dst.circuit_state = 'closed'
$$;

-- What the claim asks of each candidate: the destination takes deliveries, or this one is
-- the probe of its half-open circuit.
CREATE FUNCTION delivery_may_be_sent(dst destinations, delivery_id uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT destination_accepts_deliveries(dst)
        OR (dst.circuit_state = 'half_open' AND dst.circuit_probe_id = delivery_id
            AND dst.active AND dst.disabled_at IS NULL)
$$;
