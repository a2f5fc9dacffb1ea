"""The connection pool keeps connections, and drops one the server has cut."""

import psycopg2
import pytest

from gethookd import db
from gethookd.db import QUERIES, Database, Prepared, execute, split_statements


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


# -- prepared statements ------------------------------------------------------------------


def _prepared_names(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM pg_prepared_statements")
        return {row[0] for row in cur.fetchall()}


def test_statements_split_on_semicolons_outside_quotes_and_comments():
    sql = "SELECT 'a;b'; -- a comment; with a semicolon\nSELECT 'it''s;' AS x;\n\n"
    assert split_statements(sql) == ["SELECT 'a;b'", "SELECT 'it''s;' AS x"]


def test_a_prepared_query_numbers_its_parameters_and_keeps_their_casts():
    prepared = Prepared("q", "SELECT %(a)s::uuid[], %(b)s + 1, %(a)s::uuid[]; SELECT %(b)s")
    assert prepared.prepare == [
        "PREPARE gethookd_q_0 AS SELECT $1::uuid[], $2 + 1, $1::uuid[]",
        "PREPARE gethookd_q_1 AS SELECT $1",
    ]
    assert prepared.execute == (
        "EXECUTE gethookd_q_0(%(a)s::uuid[], %(b)s);\nEXECUTE gethookd_q_1(%(b)s)"
    )


def test_a_named_query_is_prepared_once_per_connection_and_survives_losing_it(gw, db_url):
    source = gw.create_source(gw.register("Acme", None, None)["account"]["id"], "p")
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for _ in range(2):
                execute(cur, "source_by_token", {"token": source["path_token"]})
                assert cur.fetchone()[0] == source["id"]
            assert _prepared_names(conn) == {"gethookd_source_by_token"}
            # Lost behind our back (a pooler's DISCARD ALL, another server connection).
            cur.execute("DEALLOCATE ALL")
            execute(cur, "source_by_token", {"token": source["path_token"]})
            assert cur.fetchone()[0] == source["id"]
            # Lists go as typed arrays; a failed call leaves the next one working.
            execute(cur, "dedup_holders", {"k_source_id": [source["id"]], "k_key": ["k"]})
            assert cur.fetchall() == []
            with pytest.raises(psycopg2.errors.InvalidTextRepresentation):
                execute(cur, "dedup_holders", {"k_source_id": ["not a uuid"], "k_key": ["k"]})
            execute(cur, "source_by_token", {"token": "nothing"})
            assert cur.fetchall() == []
            assert _prepared_names(conn) == {"gethookd_source_by_token"}
    finally:
        conn.close()


def test_in_an_open_transaction_the_query_runs_as_plain_text(db_url):
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            execute(cur, "source_by_token", {"token": "nothing"})
            assert cur.fetchall() == []
        conn.rollback()
        assert _prepared_names(conn) == set()
    finally:
        conn.close()


def test_a_prepared_statement_is_prepared_again_after_a_while(db_url, monkeypatch):
    # Its generic plan was made from the table sizes of its day.
    conn = psycopg2.connect(db_url)
    conn.autocommit = True

    def prepared_at() -> object:
        with conn.cursor() as cur:
            cur.execute("SELECT prepare_time FROM pg_prepared_statements")
            return cur.fetchone()[0]

    try:
        with conn.cursor() as cur:
            execute(cur, "source_by_token", {"token": "nothing"})
            first = prepared_at()
            execute(cur, "source_by_token", {"token": "nothing"})
            assert prepared_at() == first
            monkeypatch.setattr(db, "REPREPARE_AFTER", 0.0)
            execute(cur, "source_by_token", {"token": "nothing"})
            assert prepared_at() > first
            assert cur.fetchall() == []
    finally:
        conn.close()


def test_a_new_connection_prepares_again_soon_then_less_and_less_often(db_url, monkeypatch):
    # Plans made on a fresh start's empty tables are remade after REPREPARE_FIRST, then
    # after twice as long each time, up to REPREPARE_AFTER. time.monotonic, which db
    # reads, is a settable clock for this test (restored after it); the server is real.
    clock = [1000.0]
    monkeypatch.setattr(db.time, "monotonic", lambda: clock[0])
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    prepared_at_calls = []
    try:
        with conn.cursor() as cur:
            for at in (0, 0.5, 1.0, 2.5, 3.0, 5.5, 6.0, 12.0, 13.0, 22.0, 32.5):
                clock[0] = 1000.0 + at
                execute(cur, "source_by_token", {"token": "nothing"})
                assert cur.fetchall() == []
                cur.execute("SELECT prepare_time FROM pg_prepared_statements")
                prepared_at_calls.append(cur.fetchone()[0])
    finally:
        conn.close()
    changed = [
        at
        for at, before, after in zip(
            (0.5, 1.0, 2.5, 3.0, 5.5, 6.0, 12.0, 13.0, 22.0, 32.5),
            prepared_at_calls[:-1],
            prepared_at_calls[1:],
            strict=True,
        )
        if after != before
    ]
    # Kept 1 s (prepared again at 1.0), then 2 s (3.0), 4 s (12.0, its first call after
    # 7.0), 8 s (22.0), then 10 s, the cap: at 32.5, where a keep of 16 s would not be up.
    assert changed == [1.0, 3.0, 12.0, 22.0, 32.5]
