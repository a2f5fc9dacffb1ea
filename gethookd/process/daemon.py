"""`gethookd run`: prepare the database, then hand over to the supervisor.

The roles below are what each forked child runs; each imports its module only
after fork, so the master stays free of gevent and psycopg2.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable

from gethookd import config as config_mod
from gethookd import logs
from gethookd.config import Config
from gethookd.process import metrics_dir
from gethookd.process.supervisor import EXIT_BOOT, EXIT_OK, OS, Supervisor

log = logging.getLogger("gethookd")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def _title(text: str) -> None:
    import setproctitle

    setproctitle.setproctitle(f"gethookd: {text}")


def api_role(config: Config, index: int, ready: Callable[[], None], listen_fd: int | None) -> int:
    _title("api")  # gunicorn then names itself "gunicorn: master [gethookd-api]"
    from gethookd.process import api_server

    return api_server.main(config, listen_fd, on_ready=ready)


def worker_role(
    config: Config, index: int, ready: Callable[[], None], listen_fd: int | None
) -> int:
    _title(f"delivery worker {index}")
    from gevent import monkey

    monkey.patch_all()  # before anything imports socket users such as requests
    from gethookd.process import worker

    return worker.main(config, index, ready)


ROLES = {"api": api_role, "worker": worker_role}


def migrate_now(config: Config) -> int:
    """Apply migrations in a child process (the master never loads psycopg2)."""

    def child(_ready_fd: int) -> int:
        _title("migrate")
        import psycopg2

        from gethookd import migrate

        # A database that starts alongside us (compose, systemd ordering) gets DATABASE_WAIT
        # to accept connections; an error in a migration itself fails at once.
        deadline = time.monotonic() + config.DATABASE_WAIT
        delay = 0.5
        while True:
            try:
                applied = migrate.apply(config.DATABASE_URL, config.MIGRATIONS_DIR)
                break
            except psycopg2.OperationalError as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                if time.monotonic() + delay > deadline:
                    log.error("cannot prepare the database: %s", reason)
                    return EXIT_BOOT
                log.warning("database not reachable yet (%s); retrying in %.1fs", reason, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
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
            from gethookd.process.embedded import EmbeddedPostgres, development_key

            key = config.ENCRYPTION_KEY or development_key(config.GETHOOKD_DATA_DIR)
            server = EmbeddedPostgres(config.GETHOOKD_DATA_DIR, config.EMBEDDED_SHARED_BUFFERS)
            self.dsn = server.start()
            self.server, self.key = server, key
        return config.with_values(
            DATABASE_URL=self.dsn, ENCRYPTION_KEY=config.ENCRYPTION_KEY or self.key
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def run(config: Config, role: str) -> int:
    _title(f"master ({role})")
    # Until the supervisor takes over, a stop request is remembered and honoured as soon as
    # the database work in progress is done (so the embedded PostgreSQL is still stopped).
    early: list[int] = []
    for sig in (*STOP_SIGNALS, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, lambda signum, _frame: early.append(signum))
    embedded = Embedded()
    # Before anything imports prometheus_client and before any fork: every process of this
    # gateway writes its metric samples under this directory (see gethookd.metrics).
    samples = metrics_dir.use_directory()
    try:
        try:
            config = _sized(embedded.prepare(config), role)
        except Exception as exc:
            log.error("cannot prepare the embedded database: %s", exc)
            return EXIT_BOOT
        if _stop_requested(early):
            return EXIT_OK
        code = migrate_now(config)
        if code != 0:
            log.error("database migrations failed (exit code %d); not starting", code)
            return EXIT_BOOT
        if _stop_requested(early):
            return EXIT_OK

        def reload_config() -> Config:
            new = _sized(embedded.prepare(config_mod.load(config.config_file)), role)
            logs.setup(new.LOG_LEVEL, new.LOG_FORMAT)
            return new

        log.info(
            "gethookd starting: role %s, API on %s:%s, %d API process(es), %d delivery process(es)",
            role,
            config.HOST,
            config.PORT,
            config.API_WORKERS if role != "worker" else 0,
            config.WORKER_PROCESSES if role != "api" else 0,
        )
        _log_destination_policy(config)
        supervisor = Supervisor(config, reload_config, ROLES, role=role)
        # The very list the early handlers append to: a signal arriving from now until the
        # supervisor installs its own handlers is not lost (nor a SIGHUP during start-up).
        supervisor.signals = early
        return supervisor.run()
    finally:
        embedded.stop()
        metrics_dir.remove_directory(samples)


def _sized(config: Config, role: str) -> Config:
    """The configuration with API_WORKERS=auto made a number for this role."""
    return config.with_values(API_WORKERS=config_mod.api_workers(config, role))


def _log_destination_policy(config: Config) -> None:
    """Say which non-public networks destinations may reach (the SSRF guard's openings)."""
    allowed = config.ALLOWED_DESTINATION_NETWORKS or ()
    if allowed:
        log.info(
            "destinations may also reach ALLOWED_DESTINATION_NETWORKS: %s",
            ", ".join(str(n) for n in allowed),
        )
    if config.source.get("DATABASE_URL") == "default":
        log.info(
            "development mode (no DATABASE_URL): destinations on loopback and private networks "
            "are allowed; cloud metadata addresses stay refused"
        )


def _stop_requested(signals: list[int]) -> bool:
    if any(sig in STOP_SIGNALS for sig in signals):
        log.info("stop requested while starting; gethookd stopped")
        return True
    return False
