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
