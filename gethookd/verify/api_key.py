"""A static key in a header of the user's choosing (config: header, value)."""

from __future__ import annotations

from gethookd.verify.base import HEADER, SECRET, Field, VerificationFailed, header, same_text

NAME = "api_key"
FIELDS = {"header": Field(HEADER, shown=True), "value": Field(SECRET)}


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    if not same_text(config["value"], header(headers, config["header"])):
        raise VerificationFailed(f"wrong key in {config['header']}")
