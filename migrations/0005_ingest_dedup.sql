-- Inbound deduplication on the provider's own delivery id (Stripe event id, X-GitHub-Delivery,
-- webhook-id, ...). One row per (source, id) taken within DEDUP_WINDOW: the primary key makes
-- the claim atomic, so concurrent copies of one webhook make one event. A row whose
-- expires_at has passed no longer blocks: the next claim of its key takes it over in place,
-- and expired rows are deleted in small batches (gethookd/sql/dedup.sql).
--
-- event_id has no foreign key: the row must outlive nothing and slow no event deletion; a
-- duplicate of an event since deleted still answers with its id.

CREATE TABLE ingest_dedup (
    source_id uuid NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    dedup_key text NOT NULL,
    event_id uuid,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, dedup_key)
);
CREATE INDEX ingest_dedup_expires ON ingest_dedup (expires_at);

-- The GetHook SDK's custom-domain type `docs` is a type of its own (`webhook` is stored as
-- `ingest`, see gethookd/vocabulary.py).
ALTER TABLE custom_domains DROP CONSTRAINT custom_domains_type_check;
ALTER TABLE custom_domains ADD CONSTRAINT custom_domains_type_check
    CHECK (type IN ('ingest', 'portal', 'api', 'docs'));
