"""Which events: the one filter shared by the event lists and bulk replay.

A filter is parsed here from strings (query parameters, a JSON body, CLI options), so every
entry point refuses the same junk with the same message, and turns into the parameters of
the `filter_*` queries in gethookd/sql/event_filter.sql. Paging is keyset on
(created_at, id): a cursor names the last row seen, so page 10,000 costs what page 1 does.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from gethookd.errors import Invalid
from gethookd.vocabulary import DIRECTIONS, EVENT_STATUSES

# RFC 3339 date-time: a date, a time and an offset (Z or +hh:mm), nothing else.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
# A `+` in a query string arrives as a space: "2026-01-01T00:00:00 01:00".
_SPACE_OFFSET = re.compile(r"^(.*\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?) (\d{2}:\d{2})$")

FILTER_FIELDS = (
    "source_id",
    "destination_id",
    "status",
    "direction",
    "event_type",
    "since",
    "until",
)


@dataclass(frozen=True)
class EventFilter:
    """Every field optional; all given ones must hold. since is inclusive, until exclusive."""

    source_id: uuid.UUID | None = None
    destination_id: uuid.UUID | None = None
    status: str | None = None
    direction: str | None = None
    event_type: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @classmethod
    def parse(cls, get: Callable[[str], Any], only: tuple[str, ...] = FILTER_FIELDS) -> EventFilter:
        """From raw values (`get(name)` -> str or None); Invalid names the bad one."""
        values: dict[str, Any] = {}
        for name in only:
            raw = get(name)
            if raw is None:
                continue
            if not isinstance(raw, str):
                raise Invalid(f"{name} must be a string")
            if raw == "":
                raise Invalid(f"{name} must not be empty")
            values[name] = _PARSERS[name](name, raw)
        return cls(**values)  # since >= until is an empty window, not an error

    def params(self) -> dict[str, Any]:
        """The named parameters of the filter_* queries."""
        return asdict(self)

    def to_json(self) -> dict[str, str]:
        """Only the fields given, as strings (stored with a replay job, shown in its answer)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = _time_text(value) if isinstance(value, dt.datetime) else str(value)
        return out

    @classmethod
    def from_json(cls, stored: dict[str, str]) -> EventFilter:
        return cls.parse(stored.get)


def parse_time(name: str, raw: str) -> dt.datetime:
    """An RFC 3339 date-time with its offset; anything else is Invalid."""
    text = raw.strip()
    spaced = _SPACE_OFFSET.match(text)
    if spaced:
        text = f"{spaced.group(1)}+{spaced.group(2)}"
    if not _RFC3339.match(text):
        raise Invalid(f"{name} must be an RFC 3339 date-time such as 2026-11-28T05:10:00Z")
    try:
        # In UTC: PostgreSQL takes no offset beyond 15:59, RFC 3339 allows up to 23:59.
        return dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise Invalid(f"{name} is not a valid date-time: {raw[:40]!r}") from None


def _uuid(name: str, raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Invalid(f"{name} is not a valid UUID: {raw[:80]!r}") from None


def _choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise Invalid(f"{name} must be one of: {', '.join(choices)}")
        return raw

    return parse


def _event_type(name: str, raw: str) -> str:
    if len(raw) > 200 or "\x00" in raw:
        raise Invalid(f"{name} must be at most 200 characters, without NUL")
    return raw


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "source_id": _uuid,
    "destination_id": _uuid,
    "status": _choice(EVENT_STATUSES),
    "direction": _choice(DIRECTIONS),
    "event_type": _event_type,
    "since": parse_time,
    "until": parse_time,
}


def _time_text(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# -- keyset paging ----------------------------------------------------------------------------


# A cursor is "<microseconds since the epoch>_<event id as 32 hex digits>": every string of
# that shape is a position, so none a client could send is "valid but refused".
_CURSOR = re.compile(r"^([0-9]{1,17})_([0-9a-f]{32})$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def encode_cursor(created_at: dt.datetime, event_id: uuid.UUID) -> str:
    """Opaque to clients: the position of the last row of a page."""
    micros = (created_at - _EPOCH) // dt.timedelta(microseconds=1)
    return f"{micros}_{event_id.hex}"


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """(created_at, id) of a cursor; Invalid for anything not of its shape."""
    found = _CURSOR.match(cursor)
    if not found:
        raise Invalid("cursor is not one this API returned (use next_cursor as given)")
    at = _EPOCH + dt.timedelta(microseconds=int(found.group(1)))
    return at, uuid.UUID(found.group(2))


def page_params(
    event_filter: EventFilter,
    account_id: uuid.UUID,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Parameters of filter_page: the filter, the account and where the page starts."""
    after_at, after_id = decode_cursor(cursor) if cursor is not None else (None, None)
    return {
        **event_filter.params(),
        "account_id": account_id,
        "limit": limit,
        "offset": offset,
        "before_at": after_at,
        "before_id": after_id,
    }
