"""Time-ordered ids (UUID version 7, RFC 9562) for the rows written in bulk.

Rows created together get ids that sort together, so their index entries share a few
pages instead of landing on random ones (see migrations/0011_time_ordered_ids.sql, which
gives PostgreSQL the same ids as column defaults).
"""

from __future__ import annotations

import os
import time
import uuid


def uuid7s(count: int) -> list[uuid.UUID]:
    """`count` ids: 48 bits of Unix time in milliseconds, the version, 74 random bits and
    the variant. One clock read and one os.urandom call for the lot."""
    return [uuid.UUID(bytes=raw) for raw in _uuid7_bytes(count)]


def uuid7s_with_text(count: int) -> list[tuple[uuid.UUID, str]]:
    """uuid7s() with each id's text form, written from its bytes (str() of a UUID costs
    twice as much, and a batch of ingests needs both)."""
    pairs = []
    for raw in _uuid7_bytes(count):
        h = raw.hex()
        pairs.append((uuid.UUID(bytes=raw), f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"))
    return pairs


def _uuid7_bytes(count: int) -> list[bytes]:
    prefix = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    noise = os.urandom(10 * count)
    ids = []
    for i in range(0, 10 * count, 10):
        r = noise[i : i + 10]
        ids.append(prefix + bytes((0x70 | (r[0] & 0x0F), r[1], 0x80 | (r[2] & 0x3F))) + r[3:])
    return ids


_ID_TEXT: dict[uuid.UUID, str] = {}


def id_text(value: uuid.UUID) -> str:
    """str(value), remembered: for the few ids named by every request (accounts, sources,
    destinations), whose text the hot path would otherwise write out again each time."""
    found = _ID_TEXT.get(value)
    if found is None:
        if len(_ID_TEXT) >= 10_000:
            _ID_TEXT.clear()
        found = _ID_TEXT[value] = str(value)
    return found
