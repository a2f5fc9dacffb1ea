"""The API role: a gunicorn arbiter serving the falcon app on the master's listening socket.

Runs in a child forked by the supervisor; gunicorn forks API_WORKERS workers from it.
"""

from __future__ import annotations

import math
from typing import Any

from gunicorn.app.base import BaseApplication

from gethookd.config import Config


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
            "worker_class": c.API_WORKER_CLASS,
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
            "post_worker_init": lambda _worker: self.on_ready and self.on_ready(),
        }
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 25: two API generations overlap during a reload; no shared socket file.
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Called in each gunicorn worker: every worker has its own connection pool."""
        from gethookd.api.app import create_app
        from gethookd.db import Database
        from gethookd.service import Gateway

        if self.config.API_WORKER_CLASS == "gevent":
            from gethookd.db import make_cooperative

            make_cooperative()  # gunicorn's gevent worker has patched the rest already
        # Ingest needs none of these (the committer and the cache have their own); other
        # calls share a few rather than one per thread.
        database = Database(self.config.DATABASE_URL, maxconn=min(self.config.API_THREADS, 8) + 1)
        gateway = Gateway(self.config, database)
        gateway.start_batching()  # group commit and cached catalog: threads start on first use
        return create_app(gateway)


def main(config: Config, listen_fd: int, on_ready: Any = None) -> int:
    try:
        ApiServer(config, listen_fd, on_ready).run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0
