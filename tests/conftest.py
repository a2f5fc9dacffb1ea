"""Shared fixtures: a real PostgreSQL (embedded unless TEST_DATABASE_URL), a fresh
database per test cloned from a migrated template, real HTTP sinks on 127.0.0.1, and
real `gethookd run` daemons."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from gethookd import config as config_mod
from gethookd import migrate
from gethookd.crypto import new_encryption_key
from helpers import Api, Daemon, Sink

TEMPLATE = "gethookd_test_template"
FAST_ENV = {
    "WORKER_POLL_INTERVAL": "0.5s",
    "RETRY_BASE_DELAY": "0.2s",
    "RETRY_MAX_DELAY": "1s",
    "DELIVERY_TIMEOUT": "5s",
    "LEASE_GRACE": "1s",
    "DRAIN_TIMEOUT": "10s",
    "API_WORKERS": "1",
    "LOG_LEVEL": "info",
    # The suite's sinks listen on 127.0.0.1, which the SSRF guard refuses by default
    # (tests/test_ssrf.py shows that default).
    "ALLOWED_DESTINATION_NETWORKS": "127.0.0.0/8",
}


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory) -> str:
    """A URL with the right to create databases."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    from gethookd.process.embedded import EmbeddedPostgres

    # Not under pytest's basetemp: pytest prunes old basetemps, which would pull the data
    # directory from under a server that a concurrent pytest session still runs.
    data_dir = tempfile.mkdtemp(prefix="gethookd-test-pg-")
    server = EmbeddedPostgres(data_dir)
    dsn = server.start()
    try:
        yield with_database(dsn, "postgres")
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _admin(url: str):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def template_url(pg_admin_url) -> str:
    conn = _admin(pg_admin_url)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {TEMPLATE}")
    url = with_database(pg_admin_url, TEMPLATE)
    migrate.apply(url)
    yield url
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
    conn.close()


@pytest.fixture
def empty_db_url(pg_admin_url) -> str:
    """A database with no tables at all (for migration tests)."""
    yield from _scratch(pg_admin_url, template="template0")


@pytest.fixture
def db_url(pg_admin_url, template_url) -> str:
    """A migrated database of this test's own."""
    yield from _scratch(pg_admin_url, template=TEMPLATE)


def _scratch(admin_url: str, template: str):
    name = "gethookd_test_" + uuid.uuid4().hex[:12]
    conn = _admin(admin_url)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield with_database(admin_url, name)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()


@pytest.fixture(scope="module")
def module_db_url(pg_admin_url, template_url) -> str:
    """A migrated database shared by one test module (tests isolate by account)."""
    yield from _scratch(pg_admin_url, template=TEMPLATE)


@pytest.fixture(scope="module")
def api_daemon(module_db_url, encryption_key, tmp_path_factory):
    """One real `gethookd run` per test module, serving the API and delivering."""
    env = {**FAST_ENV, "DATABASE_URL": module_db_url, "ENCRYPTION_KEY": encryption_key}
    log = tmp_path_factory.mktemp("api-daemon") / "daemon.log"
    daemon = Daemon(env, log)
    daemon.start()
    yield daemon
    daemon.kill()


@pytest.fixture
def api(api_daemon):
    """A fresh account on the module's daemon, as an authenticated client."""
    return Api(api_daemon.url).register(f"user-{uuid.uuid4().hex[:10]}@example.com")


@pytest.fixture(scope="session")
def encryption_key() -> str:
    return new_encryption_key()


@pytest.fixture
def base_env(db_url, encryption_key) -> dict[str, str]:
    """Settings for a fast test instance against this test's database."""
    return {**FAST_ENV, "DATABASE_URL": db_url, "ENCRYPTION_KEY": encryption_key}


@pytest.fixture
def config(base_env) -> config_mod.Config:
    return config_mod.load(None, base_env)


@pytest.fixture
def database(db_url):
    """The service layer's pool on this test's database."""
    from gethookd.db import Database

    database = Database(db_url, maxconn=4)
    yield database
    database.close()


@pytest.fixture
def gw(config, database):
    """The gateway's services, for creating rows through the real code."""
    from gethookd.service import Gateway

    return Gateway(config, database)


@pytest.fixture
def sink():
    server = Sink()
    yield server
    server.close()


@pytest.fixture
def daemon_factory(base_env, tmp_path):
    started: list[Daemon] = []

    def start(role: str = "all", wait_ready: bool = True, **env: str) -> Daemon:
        daemon = Daemon({**base_env, **env}, tmp_path / f"daemon-{len(started)}.log", role)
        started.append(daemon)
        daemon.start(wait_ready=wait_ready)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
