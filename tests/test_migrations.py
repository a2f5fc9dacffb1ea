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
