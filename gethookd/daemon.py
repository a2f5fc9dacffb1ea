"""`gethookd run`: prepare the database, then hand over to the supervisor.

The roles below are what each forked child runs; each imports its module only
after fork, so the master stays free of gevent and psycopg2.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from gethookd import config as config_mod
from gethookd.config import Config
from gethookd.supervisor import EXIT_BOOT, OS, Supervisor

log = logging.getLogger("gethookd")


def _title(text: str) -> None:
    import setproctitle

    setproctitle.setproctitle(f"gethookd: {text}")


def api_role(config: Config, index: int, ready: Callable[[], None], listen_fd: int | None) -> int:
    _title("api")
    from gethookd import api_server

    return api_server.main(config, listen_fd, on_ready=ready)


def worker_role(
    config: Config, index: int, ready: Callable[[], None], listen_fd: int | None
) -> int:
    _title(f"delivery worker {index}")
    from gevent import monkey

    monkey.patch_all()  # before anything imports socket users such as requests
    from gethookd import worker

    return worker.main(config, index, ready)


ROLES = {"api": api_role, "worker": worker_role}


def migrate_now(config: Config) -> int:
    """Apply migrations in a child process (the master never loads psycopg2)."""

    def child(_ready_fd: int) -> int:
        _title("migrate")
        import psycopg2

        from gethookd import migrate

        try:
            applied = migrate.apply(config.DATABASE_URL, config.MIGRATIONS_DIR)
        except psycopg2.Error as exc:
            log.error("cannot prepare the database: %s", str(exc).strip())
            return EXIT_BOOT
        except OSError as exc:
            log.error("cannot read migrations: %s", exc)
            return EXIT_BOOT
        for name in applied:
            log.info("applied migration %s", name)
        return 0

    pid, ready_fd = OS().fork(child)
    os.close(ready_fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


class Embedded:
    """Starts the embedded PostgreSQL when DATABASE_URL is unset, and fills in the config."""

    def __init__(self) -> None:
        self.server = None
        self.dsn: str | None = None
        self.key: str | None = None

    def prepare(self, config: Config) -> Config:
        if not config.embedded:
            return config
        if self.server is None:
            from gethookd.embedded import EmbeddedPostgres, development_key

            self.server = EmbeddedPostgres(config.GETHOOKD_DATA_DIR)
            self.dsn = self.server.start()
            self.key = config.ENCRYPTION_KEY or development_key(config.GETHOOKD_DATA_DIR)
        return config.with_values(
            DATABASE_URL=self.dsn, ENCRYPTION_KEY=config.ENCRYPTION_KEY or self.key
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def run(config: Config, role: str) -> int:
    _title(f"master ({role})")
    embedded = Embedded()
    try:
        config = embedded.prepare(config)
        code = migrate_now(config)
        if code != 0:
            log.error("database migrations failed (exit code %d); not starting", code)
            return EXIT_BOOT

        def reload_config() -> Config:
            return embedded.prepare(config_mod.load(config.config_file))

        log.info(
            "gethookd starting: role %s, API on %s:%s, %d delivery process(es)",
            role,
            config.HOST,
            config.PORT,
            config.WORKER_PROCESSES if role != "api" else 0,
        )
        return Supervisor(config, reload_config, ROLES, role=role).run()
    finally:
        embedded.stop()
