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
    prefix = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    noise = os.urandom(10 * count)
    ids = []
    for i in range(0, 10 * count, 10):
        r = noise[i : i + 10]
        tail = bytes((0x70 | (r[0] & 0x0F), r[1], 0x80 | (r[2] & 0x3F))) + r[3:]
        ids.append(uuid.UUID(bytes=prefix + tail))
    return ids
