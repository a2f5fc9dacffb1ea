"""The log line format: gethookd's text formatter writes what logging's default would."""

from __future__ import annotations

import logging

from gethookd import logs


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
