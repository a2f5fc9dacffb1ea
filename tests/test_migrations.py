import multiprocessing

import psycopg2

from gethookd import migrate


def _apply(url, queue):
    try:
        queue.put(("ok", migrate.apply(url)))
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(("error", repr(exc)))


def test_five_processes_at_once_apply_each_migration_once(empty_db_url):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_apply, args=(empty_db_url, queue)) for _ in range(5)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert all(kind == "ok" for kind, _ in results), results
    names = [name for _, applied in results for name in applied]
    expected = [name for name, _ in migrate.migration_files(None)]
    assert sorted(names) == sorted(expected)  # each applied exactly once, by someone
    with psycopg2.connect(empty_db_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, count(*) FROM gethookd_migrations GROUP BY name")
        assert dict(cur.fetchall()) == {name: 1 for name in expected}


def test_second_run_applies_nothing(empty_db_url):
    assert migrate.apply(empty_db_url)
    assert migrate.apply(empty_db_url) == []


def test_failing_migration_leaves_nothing_half_done(empty_db_url, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE one (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE two (id int); SELECT no_such_fn();")
    try:
        migrate.apply(empty_db_url, str(tmp_path))
    except psycopg2.Error:
        pass
    else:
        raise AssertionError("the broken migration should have failed")
    with psycopg2.connect(empty_db_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM gethookd_migrations")
        assert [r[0] for r in cur.fetchall()] == ["0001_ok.sql"]
        cur.execute("SELECT to_regclass('two')")
        assert cur.fetchone()[0] is None


def test_0010_flags_destinations_that_accept_but_hold_deliveries(empty_db_url, tmp_path):
    """Deliveries left held for a destination that accepts (before 0010 an ingest racing a
    resume could leave them so) are released by the background step after the upgrade."""
    from gethookd import queue
    from gethookd.db import Database

    shipped = migrate.migration_files(None)  # (name, sql), as installed
    for name, sql in shipped:
        if name < "0010":
            (tmp_path / name).write_text(sql)
    migrate.apply(empty_db_url, str(tmp_path))
    database = Database(empty_db_url, maxconn=1)
    try:
        with database.transaction() as cur:
            cur.raw.execute(
                "WITH a AS (INSERT INTO accounts (name) VALUES ('a') RETURNING id),"
                " d AS (INSERT INTO destinations (account_id, name, url, active)"
                "       SELECT a.id, v.name, 'http://127.0.0.1:9/', v.active FROM a,"
                "       (VALUES ('on', true), ('off', false)) v(name, active) RETURNING *),"
                " e AS (INSERT INTO events (account_id, direction, body, status)"
                "       SELECT a.id, 'inbound', '{}', 'queued' FROM a RETURNING id)"
                " INSERT INTO deliveries (event_id, destination_id, account_id, max_attempts,"
                "                         status)"
                " SELECT e.id, d.id, d.account_id, 3, 'held' FROM e, d"
            )
        [(name, sql)] = [(n, s) for n, s in shipped if n.startswith("0010")]
        (tmp_path / name).write_text(sql)
        assert migrate.apply(empty_db_url, str(tmp_path)) == [name]
        with database.transaction() as cur:
            cur.raw.execute("SELECT name, releasing_since IS NOT NULL AS f FROM destinations")
            assert {r["name"]: r["f"] for r in cur.raw.fetchall()} == {"on": True, "off": False}
        assert queue.release_held(database).total == 1
        with database.transaction() as cur:
            cur.raw.execute(
                "SELECT dst.name, d.status FROM deliveries d"
                " JOIN destinations dst ON dst.id = d.destination_id"
            )
            assert {r["name"]: r["status"] for r in cur.raw.fetchall()} == {
                "on": "pending",
                "off": "held",
            }
    finally:
        database.close()
