-- name: insert_account
INSERT INTO accounts (name, email, password_hash)
VALUES (%(name)s, %(email)s, %(password_hash)s)
RETURNING id, name, plan, created_at, email, retention_days;

-- name: account_by_email
SELECT id, name, plan, created_at, email, retention_days, password_hash
FROM accounts WHERE lower(email) = lower(%(email)s);

-- name: insert_api_key
INSERT INTO api_keys (account_id, name, key_prefix, key_hash)
VALUES (%(account_id)s, %(name)s, %(key_prefix)s, %(key_hash)s)
RETURNING id, account_id, name, key_prefix, created_at, revoked_at;

-- name: list_api_keys
SELECT id, account_id, name, key_prefix, created_at, revoked_at
FROM api_keys WHERE account_id = %(account_id)s ORDER BY created_at, id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
WHERE id = %(id)s AND account_id = %(account_id)s
RETURNING id;

-- name: authenticate
SELECT k.account_id FROM api_keys k
WHERE k.key_hash = %(key_hash)s AND k.revoked_at IS NULL;

-- name: get_brand_settings
SELECT * FROM brand_settings WHERE account_id = %(account_id)s;

-- name: ensure_brand_settings
INSERT INTO brand_settings (account_id) VALUES (%(account_id)s)
ON CONFLICT (account_id) DO UPDATE SET account_id = EXCLUDED.account_id
RETURNING *;

-- name: update_brand_settings
INSERT INTO brand_settings (account_id, company_name, logo_url, primary_color, support_email,
                            docs_title)
VALUES (%(account_id)s, %(company_name)s, %(logo_url)s, %(primary_color)s, %(support_email)s,
        %(docs_title)s)
ON CONFLICT (account_id) DO UPDATE SET
    company_name = CASE WHEN %(set_company_name)s THEN EXCLUDED.company_name
                   ELSE brand_settings.company_name END,
    logo_url = CASE WHEN %(set_logo_url)s THEN EXCLUDED.logo_url
               ELSE brand_settings.logo_url END,
    primary_color = CASE WHEN %(set_primary_color)s THEN EXCLUDED.primary_color
                    ELSE brand_settings.primary_color END,
    support_email = CASE WHEN %(set_support_email)s THEN EXCLUDED.support_email
                    ELSE brand_settings.support_email END,
    docs_title = CASE WHEN %(set_docs_title)s THEN EXCLUDED.docs_title
                 ELSE brand_settings.docs_title END,
    updated_at = now()
RETURNING *;

-- name: insert_custom_domain
INSERT INTO custom_domains (account_id, domain, type, verification_token)
VALUES (%(account_id)s, %(domain)s, %(type)s, %(verification_token)s)
RETURNING *;

-- name: list_custom_domains
SELECT * FROM custom_domains WHERE account_id = %(account_id)s ORDER BY created_at, id;
