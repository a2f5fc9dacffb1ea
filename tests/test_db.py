"""The connection pool keeps connections, and drops one the server has cut."""

import psycopg2
import pytest

from gethookd.db import QUERIES, Database


def _backend_pid(database: Database) -> int:
    with database.transaction() as cur:
        cur.raw.execute("SELECT pg_backend_pid() AS pid")
        return cur.raw.fetchone()["pid"]


def test_connections_are_reused(db_url):
    database = Database(db_url, maxconn=2)
    try:
        first = _backend_pid(database)
        assert all(_backend_pid(database) == first for _ in range(5))
    finally:
        database.close()


def test_a_cut_connection_fails_once_then_the_pool_recovers(db_url):
    database = Database(db_url, maxconn=2)
    try:
        victim = _backend_pid(database)
        with psycopg2.connect(db_url) as admin, admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (victim,))
        with pytest.raises(psycopg2.OperationalError):
            _backend_pid(database)
        assert _backend_pid(database) != victim
    finally:
        database.close()


def test_a_failed_transaction_is_rolled_back(db_url):
    database = Database(db_url, maxconn=1)
    try:
        with pytest.raises(psycopg2.errors.UndefinedTable):
            with database.transaction() as cur:
                cur.raw.execute("CREATE TABLE scratch (id int)")
                cur.raw.execute("SELECT * FROM no_such_table")
        with database.transaction() as cur:
            cur.raw.execute("SELECT to_regclass('scratch') AS t")
            assert cur.raw.fetchone()["t"] is None
    finally:
        database.close()


def test_named_queries_are_loaded_once_each():
    assert "claim_deliveries" in QUERIES and "store_events" in QUERIES
    assert all(sql.strip() for sql in QUERIES.values())
