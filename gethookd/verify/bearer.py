"""Bearer token: `Authorization: Bearer <token>`."""

from __future__ import annotations

from gethookd.verify.base import SECRET, Field, VerificationFailed, header, same_text

NAME = "bearer"
FIELDS = {"token": Field(SECRET)}


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    scheme, _, token = header(headers, "Authorization").partition(" ")
    if scheme.lower() != "bearer":
        raise VerificationFailed("Authorization must use the Bearer scheme")
    if not same_text(config["token"], token.strip()):
        raise VerificationFailed("wrong bearer token")
