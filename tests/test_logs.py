"""The log line format, and many lines written at once as logging would write each."""

from __future__ import annotations

import json
import logging

import pytest

from gethookd import logs
from helpers import CountingStream


def test_the_text_line_is_loggings_own_with_the_date_cached_per_second():
    ours, reference = logs.formatter("text"), logging.Formatter(logs.TEXT_FORMAT)
    lines = []
    for created in (1_800_000_000.001, 1_800_000_000.999, 1_800_000_001.5, 1_700_000_000.25):
        record = logging.LogRecord("gethookd.x", logging.INFO, "f.py", 1, "event %s", ("e",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        lines.append(ours.format(record))
        assert lines[-1] == reference.format(record)
    # The cached date followed the clock, backwards too.
    assert len({line[:19] for line in lines}) == 3


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_many_writes_the_lines_log_would_in_one_write(fmt):
    logger = logging.getLogger(f"gethookd.test_log_many.{fmt}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    one_by_one, together = CountingStream(), CountingStream()
    handlers = [logs.LineHandler(one_by_one), logs.LineHandler(together)]
    for handler in handlers:
        handler.setFormatter(logs.formatter(fmt))
    lines = [
        (logging.WARNING if i == 3 else logging.INFO, "event %s: queued for %d", (f"e-{i}", i), {})
        for i in range(5)
    ]
    lines[1] = (logging.INFO, "event %s: %d", ("e-1", 1), {"fields": {"event_id": "e-1"}})
    try:
        logger.handlers[:] = [handlers[0]]
        for level, msg, args, extra in lines:
            logger.log(level, msg, *args, extra=extra)
        logger.handlers[:] = [handlers[1]]
        logs.log_many(logger, lines)
    finally:
        logger.handlers.clear()

    def without_time(text: str) -> list[str]:  # the clock moved between the two
        if fmt == "json":
            return [json.dumps({**json.loads(line), "time": None}) for line in text.splitlines()]
        return [line.split(" ", 2)[2] for line in text.splitlines()]

    assert one_by_one.writes == 5 and together.writes == 1
    assert without_time(together.getvalue()) == without_time(one_by_one.getvalue())
    assert "event e-4: queued for 4" in together.getvalue()
    assert "WARNING" in together.getvalue() or '"level": "warning"' in together.getvalue()
    if fmt == "json":  # the extra fields of a line, as the JSON formatter adds them
        assert json.loads(together.getvalue().splitlines()[1])["event_id"] == "e-1"


def test_log_many_keeps_levels_filters_and_other_handlers():
    logger = logging.getLogger("gethookd.test_log_many.levels")
    logger.propagate = False
    ours, quiet, plain = CountingStream(), CountingStream(), CountingStream()
    handler, quiet_handler = logs.LineHandler(ours), logs.LineHandler(quiet)
    quiet_handler.setLevel(logging.WARNING)
    other = logging.StreamHandler(plain)  # not a LineHandler: one record at a time
    lines = [(logging.INFO, "line %d", (i,), None) for i in range(4)]
    lines.append((logging.WARNING, "loud %d", (4,), None))
    try:
        logger.handlers[:] = [handler, quiet_handler, other]
        logger.setLevel(logging.ERROR)
        logs.log_many(logger, lines)
        assert ours.getvalue() == plain.getvalue() == ""

        logger.setLevel(logging.INFO)
        logger.addFilter(lambda record: record.args[0] % 2 == 0)  # the even ones only
        logs.log_many(logger, lines)
    finally:
        logger.handlers.clear()
        logger.filters.clear()
        logger.setLevel(logging.NOTSET)
    assert ours.getvalue().count("\n") == 3 and "line 2" in ours.getvalue()
    assert "line 1" not in ours.getvalue() and ours.writes == 1
    assert quiet.getvalue().endswith("loud 4\n") and quiet.getvalue().count("\n") == 1
    assert plain.getvalue() == "line 0\nline 2\nloud 4\n"
