-- Per-account branding and custom domains (GetHook's white-label settings).

CREATE TABLE brand_settings (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL UNIQUE REFERENCES accounts (id) ON DELETE CASCADE,
    company_name text,
    logo_url text,
    primary_color text,
    support_email text,
    docs_title text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE custom_domains (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    domain text NOT NULL UNIQUE,
    type text NOT NULL DEFAULT 'ingest' CHECK (type IN ('ingest', 'portal', 'api')),
    status text NOT NULL DEFAULT 'pending_verification',
    tls_status text NOT NULL DEFAULT 'pending',
    verification_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX custom_domains_account ON custom_domains (account_id, created_at);
