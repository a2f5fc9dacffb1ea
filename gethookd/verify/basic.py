"""HTTP Basic: `Authorization: Basic base64(username:password)`."""

from __future__ import annotations

import base64
import binascii

from gethookd.verify.base import SECRET, USERNAME, Field, VerificationFailed, header, same_text

NAME = "basic"
FIELDS = {"username": Field(USERNAME, shown=True), "password": Field(SECRET)}


def verify(headers: dict[str, str], body: bytes, config: dict, now: float) -> None:
    scheme, _, encoded = header(headers, "Authorization").partition(" ")
    if scheme.lower() != "basic":
        raise VerificationFailed("Authorization must use the Basic scheme")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise VerificationFailed("Authorization: Basic credentials are not base64") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise VerificationFailed("Authorization: Basic credentials lack username:password")
    # Both compared always, so the timing does not tell which one was wrong.
    user_ok = same_text(config["username"], username)
    password_ok = same_text(config["password"], password)
    if not (user_ok and password_ok):
        raise VerificationFailed("wrong username or password")
