"""Where every process of one gateway writes its metric samples (see gethookd.metrics).

Kept apart from gethookd.metrics on purpose: prometheus_client chooses between in-memory
and multiprocess values when it is first imported, so the master must set the directory
before anything imports it, and its children (forked, not re-imported) inherit the choice.
"""

from __future__ import annotations

import os
import shutil
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_directory() -> str:
    """A fresh directory for this gateway's samples, exported to every child."""
    path = tempfile.mkdtemp(prefix="gethookd-metrics-")
    os.environ[ENV] = path
    return path


def remove_directory(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(ENV) == path:
        del os.environ[ENV]


def process_exited(pid: int) -> None:
    """For each child the master reaps: its live gauges (processes by role) stop counting."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
