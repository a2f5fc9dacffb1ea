"""auth_mode none: anyone who knows the ingest URL may post."""

from __future__ import annotations

NAME = "none"
FIELDS: dict = {}


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    return None
