"""Where every process of one gateway writes its metric samples (see gethookd.metrics).

Kept apart from gethookd.metrics on purpose: prometheus_client chooses between in-memory
and multiprocess values when it is first imported, so the master must set the directory
before anything imports it, and its children (forked, not re-imported) inherit the choice.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


PREFIX = "gethookd-metrics-"


def use_directory() -> str:
    """A fresh directory for this gateway's samples, exported to every child. Directories
    left by masters that were killed (SIGKILL leaves no chance to clean up) are removed."""
    _remove_orphans()
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
    os.environ[ENV] = path
    return path


def _remove_orphans() -> None:
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = path.name[len(PREFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # another user's gateway, alive


def remove_directory(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(ENV) == path:
        del os.environ[ENV]


def process_exited(pid: int) -> None:
    """For each child the master reaps: its live gauges (processes by role) stop counting."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
