-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS gethookd_migrations (
    name text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT name FROM gethookd_migrations;

-- name: record_migration
INSERT INTO gethookd_migrations (name) VALUES (%s);
