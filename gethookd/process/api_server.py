"""The API role: a gunicorn arbiter serving the falcon app on the master's listening socket.

Runs in a child forked by the supervisor; gunicorn forks API_WORKERS workers from it.
"""

from __future__ import annotations

import ctypes
import math
import signal
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from gethookd import logs
from gethookd.config import Config
from gethookd.process import metrics_dir

# API_WORKER_CLASS -> gunicorn's worker_class; the others are gunicorn's own names.
WORKER_CLASSES = {"httptools": "gethookd.process.http_worker.HttpWorker"}


class ApiServer(BaseApplication):
    def __init__(self, config: Config, listen_fd: int, on_ready: Any = None) -> None:
        self.config = config
        self.listen_fd = listen_fd
        self.on_ready = on_ready
        super().__init__()

    def load_config(self) -> None:
        c = self.config
        settings = {
            "bind": [f"fd://{self.listen_fd}"],
            "workers": c.API_WORKERS,
            "worker_class": WORKER_CLASSES.get(c.API_WORKER_CLASS, c.API_WORKER_CLASS),
            "threads": c.API_THREADS,
            "graceful_timeout": math.ceil(c.DRAIN_TIMEOUT),
            "timeout": 60,
            "keepalive": 5,
            "proc_name": "gethookd-api",
            "loglevel": c.LOG_LEVEL,
            "errorlog": "-",
            "accesslog": None,
            "limit_request_line": 8190,
            # Ready once a worker has loaded the app and can answer, not when the arbiter has
            # merely bound: on a reload the old API retires only then (gunicorn's when_ready
            # runs before any worker exists). The worker inherited the readiness pipe.
            "post_worker_init": self._post_worker_init,
            # gunicorn's workers are the arbiter's children, not the master's: their live
            # metric samples (processes by role) are dropped here when one exits.
            "child_exit": lambda _server, worker: metrics_dir.process_exited(worker.pid),
        }
        settings.update(process_settings(c))
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 25: two API generations overlap during a reload; no shared socket file.
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def _post_worker_init(self, worker: Any) -> None:
        quit_once(worker)
        if self.on_ready:
            self.on_ready()

    def load(self) -> Any:
        """Called in each gunicorn worker: every worker has its own connection pool."""
        from gethookd.api.app import create_app
        from gethookd.db import Database
        from gethookd.service import Gateway

        if self.config.API_WORKER_CLASS != "gthread":
            from gethookd.db import make_cooperative

            make_cooperative()  # gunicorn's gevent worker has patched the rest already
        # Ingest needs none of these (the committer and the cache have their own); other
        # calls share a few rather than one per thread.
        database = Database(self.config.DATABASE_URL, maxconn=min(self.config.API_THREADS, 8) + 1)
        gateway = Gateway(self.config, database)
        gateway.start_batching()  # group commit and cached catalog: threads start on first use
        from gethookd import metrics

        metrics.PROCESSES.labels("api").set(1)  # this gunicorn worker, added up per role
        return create_app(gateway)


# -- signals and logging of the gunicorn processes (ops) ---------------------------------


def process_settings(config: Config) -> dict[str, Any]:
    """gunicorn settings that make its processes stop cleanly and log like the rest."""
    return {"post_fork": die_with_arbiter, "logger_class": gunicorn_logger(config.LOG_FORMAT)}


def die_with_arbiter(_server: Any, _worker: Any) -> None:
    """In a new gunicorn worker: the kernel SIGKILLs it if its arbiter dies, however.

    gunicorn's workers only notice a dead arbiter between requests; a worker stuck in a
    handler would otherwise outlive it, holding the listening socket.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def quit_once(worker: Any) -> None:
    """Make a worker's fast-stop handler idempotent.

    gunicorn runs handle_quit for SIGINT and SIGQUIT; a second signal arriving while the
    first is inside ThreadPoolExecutor.shutdown re-entered it and deadlocked on its lock.
    The first one now ignores further SIGINT/SIGQUIT before doing the work.
    """
    handler = worker.handle_quit

    def once(sig: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)
        handler(sig, frame)

    signal.signal(signal.SIGINT, once)
    signal.signal(signal.SIGQUIT, once)


def gunicorn_logger(fmt: str) -> type:
    """gunicorn's logger class with gethookd's line format (text or JSON) on its error log."""

    class Logger(glogging.Logger):
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(logs.formatter(fmt))

    return Logger


def main(config: Config, listen_fd: int, on_ready: Any = None) -> int:
    try:
        ApiServer(config, listen_fd, on_ready).run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0
