"""Secrets at rest and webhook signatures: the rules receivers and operators rely on."""

import base64
import hashlib
import hmac

import pytest
from cryptography.exceptions import InvalidTag

from gethookd import crypto

KEY = "11" * 32


def test_sealed_values_are_bound_to_their_row_and_column():
    box = crypto.SecretBox(KEY)
    sealed = box.encrypt("s3cret", "destinations.signing_secret:1")
    assert sealed.startswith("v1:") and "s3cret" not in sealed
    assert box.encrypt("s3cret", "destinations.signing_secret:1") != sealed  # fresh nonce
    assert box.decrypt(sealed, "destinations.signing_secret:1") == "s3cret"
    with pytest.raises(InvalidTag):
        box.decrypt(sealed, "destinations.signing_secret:2")  # moved to another row
    with pytest.raises(InvalidTag):
        crypto.SecretBox("22" * 32).decrypt(sealed, "destinations.signing_secret:1")


def test_whsec_secrets_are_base64_and_others_are_raw_bytes():
    raw = b"0123456789abcdef0123"
    standard = "whsec_" + base64.b64encode(raw).decode()
    assert crypto.signing_key(standard) == raw
    assert crypto.signing_key("plain-secret-1234") == b"plain-secret-1234"
    with pytest.raises(ValueError):
        crypto.signing_key("whsec_not base64!")


def test_signature_matches_the_standard_webhooks_scheme():
    secret = "plain-secret-1234"
    signed = b"msg_1.1700000000." + b'{"a":1}'
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest())
    assert crypto.sign_webhook(secret, "msg_1", 1700000000, b'{"a":1}') == "v1," + expected.decode()


def test_passwords_and_api_keys_are_stored_as_hashes():
    stored = crypto.hash_password("correct horse")
    assert "correct horse" not in stored
    assert crypto.check_password("correct horse", stored)
    assert not crypto.check_password("wrong horse", stored)
    assert not crypto.check_password("anything", None)
    key = crypto.new_api_key()
    assert key.startswith("hk_") and crypto.hash_api_key(key) != key
    assert len(crypto.hash_api_key(key)) == 64
