"""Secret rotation with overlap: two Standard Webhooks signatures during
SECRET_ROTATION_GRACE, verified with the `standardwebhooks` library; only the new one after."""

from __future__ import annotations

import datetime
import uuid

import psycopg2
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from gethookd import crypto
from gethookd.deliver import Request, build_headers
from helpers import wait_for

BODY = b'{"type":"invoice.paid","id":42}'

# What the delivery claim returns for signing (the lead merges it into queue.sql): the
# previous secret only while its grace lasts.
CLAIM_SECRETS = """
SELECT d.signing_secret_enc,
       CASE WHEN d.previous_secret_expires_at > now() THEN d.previous_signing_secret_enc END
           AS previous_signing_secret_enc
FROM destinations d WHERE d.id = %s
"""


def request(*secrets: str, **fields) -> Request:
    return Request(
        url="https://receiver.example/hook",
        body=BODY,
        content_type="application/json",
        event_id="msg_2fZ1",
        event_type="invoice.paid",
        attempt_number=1,
        timeout=5.0,
        signing_secrets=tuple(secrets),
        **fields,
    )


def accepts(secret: str, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(BODY, headers)
    except WebhookVerificationError:
        return False
    return True


def test_both_signatures_verify_with_either_secret_and_only_new_after():
    old, new = crypto.new_signing_secret(), crypto.new_signing_secret()
    overlap = build_headers(request(new, old))
    signatures = overlap["Webhook-Signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert accepts(old, overlap) and accepts(new, overlap)
    after = build_headers(request(new))
    assert " " not in after["Webhook-Signature"]
    assert accepts(new, after) and not accepts(old, after)
    # The single-secret field still signs (callers not yet passing signing_secrets).
    legacy = build_headers(request(signing_secret=old))
    assert accepts(old, legacy) and not accepts(new, legacy)
    assert "Webhook-Signature" not in build_headers(request())


def _secrets(db_url: str, gw, dest_id) -> tuple[str, ...]:
    """As the worker will sign after the claim change: current, then previous while valid."""
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(CLAIM_SECRETS, (str(dest_id),))
            current_enc, previous_enc = cur.fetchone()
    finally:
        conn.close()
    return crypto.signing_secrets(gw.box, str(dest_id), current_enc, previous_enc)


@pytest.fixture
def short_grace_gw(config, database):
    from gethookd.service import Gateway

    return Gateway(config.with_values(SECRET_ROTATION_GRACE=1.5), database)


def test_rotation_signs_with_both_during_grace_then_only_new(short_grace_gw, db_url):
    gw = short_grace_gw
    account = gw.register("Acme", f"{uuid.uuid4().hex[:8]}@example.com", "pw")["account"]
    old = crypto.new_signing_secret()
    dest = gw.create_destination(account["id"], "d", "http://127.0.0.1:9/", signing_secret=old)
    assert _secrets(db_url, gw, dest["id"]) == (old,)
    assert dest["previous_secret_expires_at"] is None

    rotated = gw.rotate_secret(account["id"], dest["id"])
    new = rotated["signing_secret"]
    assert new != old and rotated["previous_secret_expires_at"] is not None
    secrets = _secrets(db_url, gw, dest["id"])
    assert secrets == (new, old)
    headers = build_headers(request(*secrets))
    assert accepts(old, headers) and accepts(new, headers)
    shown = gw.get_destination(account["id"], dest["id"])
    assert shown["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]
    assert not any("previous_signing" in k for k in shown)  # never shown, even masked

    def after_grace() -> tuple[str, ...] | None:
        found = _secrets(db_url, gw, dest["id"])
        return found if len(found) == 1 else None

    secrets = wait_for(after_grace, timeout=10, what="the grace period to end")
    assert secrets == (new,)
    headers = build_headers(request(*secrets))
    assert accepts(new, headers) and not accepts(old, headers)
    assert gw.get_destination(account["id"], dest["id"])["previous_secret_expires_at"] is None

    # Rotating again: the one just retired becomes the previous (the first is gone).
    newest = gw.rotate_secret(account["id"], dest["id"], "a-receiver-chosen-secret-123")
    assert _secrets(db_url, gw, dest["id"]) == (newest["signing_secret"], new)


def test_rotate_secret_api_shows_the_overlap(api):
    dest = api.data(
        "POST", "/v1/destinations", {"name": "d", "url": "http://127.0.0.1:9/"}, status=201
    )
    rotated = api.data("POST", f"/v1/destinations/{dest['id']}/rotate-secret", {})
    until = datetime.datetime.fromisoformat(rotated["previous_secret_expires_at"])
    left = until - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=23) < left <= datetime.timedelta(hours=24)  # default 24h
    shown = api.data("GET", f"/v1/destinations/{dest['id']}")
    assert shown["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]
    assert rotated["signing_secret"] not in str(shown)
    missing = api.call("POST", f"/v1/destinations/{uuid.uuid4()}/rotate-secret", {})
    assert missing.status_code == 404
