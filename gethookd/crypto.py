"""Secrets at rest (AES-256-GCM), webhook signatures, API key and password hashing."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_VERSION = "v1"


def key_id(hex_key: str) -> str:
    """A short public name for a key (HMAC of a fixed label under it): a sealed value says
    which key sealed it without revealing anything usable about the key."""
    digest = hmac.new(bytes.fromhex(hex_key), b"gethookd key id", hashlib.sha256).hexdigest()
    return digest[:8]


class UnknownKey(InvalidTag):
    """A value names a key this box does not hold (an InvalidTag, as a wrong key is)."""


class SecretBox:
    """Encrypts one column value bound to its row, so a ciphertext cannot be moved.

    A value reads `v1:<key id>:<base64 nonce+ciphertext>` (base64 has no `:`), so during a
    key rotation each value names the key that opens it. Values written before key ids
    (`v1:<base64>`) are tried with the current key, then the previous one. New values are
    always sealed with the current key.
    """

    def __init__(self, hex_key: str, previous_key: str | None = None) -> None:
        self.key_id = key_id(hex_key)
        self._aead = AESGCM(bytes.fromhex(hex_key))
        self._keys = {self.key_id: self._aead}
        self._previous = None
        if previous_key and previous_key.lower() != hex_key.lower():
            self._previous = AESGCM(bytes.fromhex(previous_key))
            self._keys.setdefault(key_id(previous_key), self._previous)

    @property
    def current_prefix(self) -> str:
        """How every value sealed with the current key starts (for `LIKE prefix%`)."""
        return f"{KEY_VERSION}:{self.key_id}:"

    def is_current(self, token: str) -> bool:
        return token.startswith(self.current_prefix)

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return self.current_prefix + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, token: str, context: str) -> str:
        version, _, rest = token.partition(":")
        if version != KEY_VERSION:
            raise ValueError(f"unknown key version {version!r}")
        kid, sep, body = rest.partition(":")
        if sep:
            aead = self._keys.get(kid)
            if aead is None:
                raise UnknownKey(
                    f"value sealed with key {kid}, which is neither ENCRYPTION_KEY "
                    "nor ENCRYPTION_KEY_PREVIOUS"
                )
            candidates = [aead]
        else:  # before key ids: the current key, else the previous one
            body = rest
            candidates = [self._aead] + ([self._previous] if self._previous else [])
        raw = base64.b64decode(body)
        for aead in candidates[:-1]:
            try:
                return aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
            except InvalidTag:
                continue
        return candidates[-1].decrypt(raw[:12], raw[12:], context.encode()).decode()


def aad(table_column: str, row_id: object) -> str:
    """Associated data binding a sealed value to its row and column (`table.column:<id>`)."""
    return f"{table_column}:{row_id}"


def new_encryption_key() -> str:
    return secrets.token_hex(32)


def new_api_key() -> str:
    return "hk_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """API keys carry 256 random bits, so a plain SHA-256 is enough to store them."""
    return hashlib.sha256(key.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt_b64, digest_b64 = stored.split("$")
    digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), n=2**14, r=8, p=1)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def new_signing_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@functools.lru_cache(maxsize=1024)  # a delivery process signs with few secrets, many times
def signing_key(secret: str) -> bytes:
    """`whsec_<base64>` (Standard Webhooks) is decoded; any other secret is used as UTF-8 bytes.

    One rule a receiver can follow; the API refuses a `whsec_` secret that is not base64.
    """
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    return secret.encode()


def sign_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks signature: v1,base64(HMAC-SHA256(id.timestamp.body))."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(signing_key(secret), signed, hashlib.sha256)  # one call into C
    return "v1," + base64.b64encode(digest).decode()


def sign_webhooks(secrets: tuple[str, ...], msg_id: str, timestamp: int, body: bytes) -> str:
    """webhook-signature with one `v1,<sig>` per secret, space-separated (Standard Webhooks):
    a receiver accepts the webhook if any signature matches a secret it knows."""
    return " ".join(sign_webhook(s, msg_id, timestamp, body) for s in secrets)


def signing_secrets(
    box: SecretBox, dest_id: object, current_enc: str | None, previous_enc: str | None = None
) -> tuple[str, ...]:
    """The secrets a delivery is signed with: the current one, then the previous one while
    its rotation grace lasts (the caller passes previous_enc only then)."""
    found = []
    if current_enc:
        found.append(box.decrypt(current_enc, aad("destinations.signing_secret", dest_id)))
    if previous_enc:
        found.append(
            box.decrypt(previous_enc, aad("destinations.previous_signing_secret", dest_id))
        )
    return tuple(found)


def mask(secret: str | None) -> str | None:
    if not secret:
        return secret
    return secret[:6] + "…" + "*" * 4 if len(secret) > 12 else "****"
