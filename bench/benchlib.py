"""What every benchmark needs of PostgreSQL: a server, and scratch databases dropped after.

With a URL (`--database-url`/`DATABASE_URL`) the benchmark uses that server and touches
nothing but the databases it creates there (it needs CREATEDB); without one it starts an
embedded PostgreSQL in a temporary directory, as `gethookd run` would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def code_version() -> str:
    """Which gethookd is measured: its checkout and commit (PYTHONPATH may point elsewhere)."""
    import gethookd

    root = Path(gethookd.__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h %ad", "--date=short"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except Exception:
        rev = "?"
    return f"{root} ({rev})"


HERE = Path(__file__).resolve().parent

# The naive baseline's table (bench/naive_app.py), in the scratch database it is served from.
NAIVE_TABLE = (
    "CREATE TABLE naive_events (id bigserial PRIMARY KEY, token text NOT NULL,"
    " headers jsonb NOT NULL, body bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn(app: str, port: int, *worker_args: str) -> list[str]:
    """The command serving one of bench/naive_app.py's apps on 127.0.0.1:port."""
    return [
        *(sys.executable, "-m", "gunicorn", *worker_args),
        *("-b", f"127.0.0.1:{port}", "--chdir", str(HERE), "--log-level", "warning", app),
    ]


def naive_command(port: int) -> list[str]:
    """The naive ingest app in the shape the issue names: 2 gthread workers x 4 threads."""
    return gunicorn("naive_app:app", port, "-k", "gthread", "-w", "2", "--threads", "4")


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """Until url answers at all; exits with the log's tail if the server dies or is slow."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: server exited:\n{log.read_text()[-3000:]}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def start_api(env: dict[str, str], log_path: Path, timeout: float = 120) -> subprocess.Popen:
    """`gethookd run --role api` with env (PORT among it), once its /readyz answers 200.

    It leads its own process group, so os.killpg stops it with its workers. Exits with the
    log's tail if it dies or is not ready in time.
    """
    import requests

    exe = Path(sys.executable).parent / "gethookd"
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "gethookd.cli"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*argv, "run", "--role", "api"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{env['PORT']}/readyz"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(Path(log_path).read_text(errors="replace")[-3000:])
        time.sleep(0.2)


def services(url: str, maxconn: int = 2):
    """gethookd's config, database pool and service layer on a scratch database, the way
    the benchmarks set up their accounts, sources and routes (a fresh encryption key; the
    loopback receivers allowed, which a production gateway refuses)."""
    from gethookd import config as config_mod
    from gethookd.crypto import new_encryption_key
    from gethookd.db import Database
    from gethookd.service import Gateway

    env = {
        "DATABASE_URL": url,
        "ENCRYPTION_KEY": new_encryption_key(),
        "ALLOWED_DESTINATION_NETWORKS": "127.0.0.0/8",
    }
    config = config_mod.load(None, env)
    database = Database(url, maxconn=maxconn)
    return config, database, Gateway(config, database)


class Postgres:
    def __init__(self, url: str | None, tmp: Path, prefix: str = "gethookd_bench_") -> None:
        self.url = url
        self.tmp = tmp
        self.prefix = prefix
        self.embedded = None
        self.databases: list[str] = []

    def start(self) -> str:
        """The admin URL (a server given, or an embedded one started now)."""
        if self.url is None:
            from gethookd.process.embedded import EmbeddedPostgres

            print("starting an embedded PostgreSQL ...", flush=True)
            self.embedded = EmbeddedPostgres(str(self.tmp / "pg"))
            self.url = self.embedded.start()
        return self.url

    def admin(self, statement: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.start())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def database(self) -> str:
        """A new database with gethookd's schema; its URL."""
        from gethookd import migrate

        name = self.prefix + uuid.uuid4().hex[:10]
        self.admin(f"CREATE DATABASE {name}")
        self.databases.append(name)
        url = urlunsplit(urlsplit(self.start())._replace(path="/" + name))
        migrate.apply(url)
        return url

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if name in self.databases:
            self.databases.remove(name)

    def close(self) -> None:
        """Drop every scratch database and stop an embedded server; never raises."""
        for name in list(self.databases):
            try:
                self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            except Exception as exc:  # the report matters more than the cleanup
                print(f"could not drop {name}: {exc}", file=sys.stderr)
        self.databases.clear()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
