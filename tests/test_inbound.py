"""Inbound providers signed by their own libraries (Twilio, Stripe, Slack, Standard Webhooks,
Svix; Paddle and generic HMAC by their documented algorithms), deduplication on the
provider's delivery id (also under 50 concurrent copies), junk signature headers, and the
GetHook SDK's calls (shared_secret, its custom-domain types, public preset catalogues, a bare
hk_ key) against the real daemon."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
import uuid
from urllib.parse import urlencode

import psycopg2
import pytest
import requests
import slack_sdk.signature
import standardwebhooks
import stripe
import svix.webhooks
from twilio.request_validator import RequestValidator

from gethookd import verify
from gethookd.db import Database
from gethookd.verify import ConfigError, VerificationFailed, check_config, verify_request
from gethookd.verify.base import PUBLIC_URL
from gethookd.vocabulary import EVENT_STATUSES
from helpers import Api, wait_for

NOW = time.time()
TWILIO_TOKEN = "twilio-auth-token-0123456789"
PADDLE_SECRET = "pdl_ntfset_01h8_secret"
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FORM = "application/x-www-form-urlencoded"


def check(mode, provider, config, headers, body, now=NOW):
    verify_request(mode, provider, config, {k.lower(): v for k, v in headers.items()}, body, now)


def refused(mode, provider, config, headers, body, now=NOW) -> str:
    with pytest.raises(VerificationFailed) as info:
        check(mode, provider, config, headers, body, now)
    assert config["secret"] not in info.value.reason
    return info.value.reason


# -- twilio (RequestValidator) ---------------------------------------------------------------

URL = "https://hooks.example.com/ingest/tok123?site=eu"
PARAMS = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+15550001", "Body": "héllo"}


def twilio_form(url=URL, params=PARAMS, token=TWILIO_TOKEN, **extra) -> tuple[dict, bytes]:
    sig = RequestValidator(token).compute_signature(url, params)
    headers = {"X-Twilio-Signature": sig, "Content-Type": FORM, PUBLIC_URL: URL, **extra}
    return headers, urlencode(params).encode()


def test_twilio_form_signed_by_request_validator():
    cfg = {"secret": TWILIO_TOKEN}
    headers, body = twilio_form()
    check("provider", "twilio", cfg, headers, body)
    # Twilio may sign the URL with the default port; either verifies.
    check("provider", "twilio", cfg, twilio_form(url=URL.replace(".com/", ".com:443/"))[0], body)
    # A custom domain: the same path on the host the request names.
    custom = URL.replace("hooks.example.com", "in.acme.io")
    check("provider", "twilio", cfg, twilio_form(url=custom, Host="in.acme.io")[0], body)
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify.event_type("twilio", lower, body) == "message.delivered"
    call = urlencode({"CallSid": "CA1", "CallStatus": "completed"}).encode()
    assert verify.event_type("twilio", lower, call) == "call.completed"
    # Tampered parameter, wrong token, another URL (the query string is signed), stale host.
    tampered = urlencode({**PARAMS, "To": "+15559999"}).encode()
    assert "does not match" in refused("provider", "twilio", cfg, headers, tampered)
    assert "does not match" in refused(
        "provider", "twilio", cfg, twilio_form(token="other-token")[0], body
    )
    other_query = {**headers, PUBLIC_URL: URL.replace("site=eu", "site=us")}
    assert "does not match" in refused("provider", "twilio", cfg, other_query, body)
    wrong_host = twilio_form(url=custom, Host="evil.example")[0]
    assert "does not match" in refused("provider", "twilio", cfg, wrong_host, body)


def test_twilio_json_body_with_body_sha256():
    cfg = {"secret": TWILIO_TOKEN}
    body = json.dumps({"type": "com.twilio.messaging.message.delivered", "id": "x"}).encode()
    url = URL + "&bodySHA256=" + hashlib.sha256(body).hexdigest()
    sig = RequestValidator(TWILIO_TOKEN).compute_signature(url, {})
    assert RequestValidator(TWILIO_TOKEN).validate(url, body.decode(), sig)
    headers = {"X-Twilio-Signature": sig, "Content-Type": "application/json", PUBLIC_URL: url}
    check("provider", "twilio", cfg, headers, body)
    assert "bodySHA256 does not match" in refused("provider", "twilio", cfg, headers, body + b" ")
    no_hash = {**headers, PUBLIC_URL: URL}
    assert "must carry bodySHA256" in refused("provider", "twilio", cfg, no_hash, body)
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify.event_type("twilio", lower, body) == "com.twilio.messaging.message.delivered"


# -- paddle (documented algorithm; Paddle's SDK is not used) ---------------------------------

PADDLE_BODY = json.dumps(
    {"event_id": "evt_01", "event_type": "transaction.completed", "notification_id": "ntf_01"}
).encode()


def paddle_header(secret=PADDLE_SECRET, ts=int(NOW), body=PADDLE_BODY, extra="") -> dict:
    h1 = hmac.new(secret.encode(), f"{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Paddle-Signature": f"ts={ts};{extra}h1={h1}"}


def test_paddle():
    cfg = {"secret": PADDLE_SECRET}
    check("provider", "paddle", cfg, paddle_header(), PADDLE_BODY)
    check("provider", "paddle", cfg, paddle_header(extra="h1=" + "00" * 32 + ";"), PADDLE_BODY)
    assert "matches" in refused("provider", "paddle", cfg, paddle_header("other"), PADDLE_BODY)
    assert "matches" in refused("provider", "paddle", cfg, paddle_header(), PADDLE_BODY + b" ")
    stale = refused("provider", "paddle", cfg, paddle_header(ts=int(NOW) - 301), PADDLE_BODY)
    assert "seconds old" in stale
    assert "no timestamp" in refused(
        "provider", "paddle", cfg, {"Paddle-Signature": "h1=00"}, PADDLE_BODY
    )
    lower = {k.lower(): v for k, v in paddle_header().items()}
    assert verify.event_type("paddle", lower, PADDLE_BODY) == "transaction.completed"
    assert verify.delivery_id("provider", "paddle", cfg, lower, PADDLE_BODY) == "ntf_01"


# -- generic hmac algorithms ------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("mode", ["hmac", "shared_secret"])
def test_generic_hmac_algorithms(algorithm, mode):
    body = b'{"n":1}'
    digest = hmac.new(b"k3y", body, getattr(hashlib, algorithm)).digest()
    cfg = check_config(
        mode, None, {"secret": "k3y", "algorithm": algorithm, "header": "X-Hub-Signature"}
    )
    check(mode, None, cfg, {"X-Hub-Signature": digest.hex()}, body)
    b64 = check_config(mode, None, {**cfg, "encoding": "base64", "prefix": f"{algorithm}="})
    check(
        mode,
        None,
        b64,
        {"X-Hub-Signature": f"{algorithm}=" + base64.b64encode(digest).decode()},
        body,
    )
    other = "sha512" if algorithm != "sha512" else "sha1"
    wrong = hmac.new(b"k3y", body, getattr(hashlib, other)).hexdigest()
    assert "does not match" in refused(mode, None, cfg, {"X-Hub-Signature": wrong}, body)
    with pytest.raises(ConfigError, match="algorithm must be one of: sha1, sha256, sha512"):
        check_config(mode, None, {"secret": "k", "algorithm": "md5"})


# -- the official libraries of the other providers, and their delivery ids -------------------


def test_libraries_signatures_and_delivery_ids():
    body = json.dumps({"id": "evt_stripe_1", "type": "invoice.paid"})
    header = stripe.WebhookSignature.generate_signature_header(body, "whsec_s", int(NOW))
    stripe_headers = {"stripe-signature": header}
    check("provider", "stripe", {"secret": "whsec_s"}, stripe_headers, body.encode())
    assert verify.delivery_id("provider", "stripe", {}, stripe_headers, body.encode()) == (
        "evt_stripe_1"
    )

    slack_body = json.dumps({"event_id": "Ev01", "type": "event_callback"}).encode()
    ts = str(int(NOW))
    sig = slack_sdk.signature.SignatureVerifier("slack-secret").generate_signature(
        timestamp=ts, body=slack_body
    )
    slack_headers = {"x-slack-signature": sig, "x-slack-request-timestamp": ts}
    check("provider", "slack", {"secret": "slack-secret"}, slack_headers, slack_body)
    assert verify.delivery_id("provider", "slack", {}, slack_headers, slack_body) == "Ev01"

    when = dt.datetime.fromtimestamp(int(NOW), tz=dt.UTC)
    for provider, lib, prefix in (
        ("standard_webhooks", standardwebhooks.Webhook, "webhook"),
        ("svix", svix.webhooks.Webhook, "svix"),
    ):
        signed = lib(STANDARD_SECRET).sign("msg_1", when, body)
        headers = {
            f"{prefix}-id": "msg_1",
            f"{prefix}-timestamp": str(int(NOW)),
            f"{prefix}-signature": signed,
        }
        check("provider", provider, {"secret": STANDARD_SECRET}, headers, body.encode())
        assert verify.delivery_id("provider", provider, {}, headers, body.encode()) == "msg_1"

    assert verify.delivery_id("provider", "github", {}, {"x-github-delivery": "d-1"}, b"") == "d-1"
    assert (
        verify.delivery_id("provider", "shopify", {}, {"x-shopify-webhook-id": "s-1"}, b"") == "s-1"
    )
    twilio_headers = {"i-twilio-idempotency-token": "tok-1"}
    assert verify.delivery_id("provider", "twilio", {}, twilio_headers, b"") == "tok-1"
    # A source without a provider names its header; long ids become a digest.
    named = {"dedup_header": "X-Request-Id"}
    assert verify.delivery_id("none", None, named, {"x-request-id": "r-1"}, b"") == "r-1"
    long_id = verify.delivery_id("none", None, named, {"x-request-id": "r" * 5000}, b"")
    assert long_id.startswith("sha256:") and len(long_id) == 71
    assert verify.delivery_id("none", None, {}, {"x-request-id": "r-1"}, b"") is None
    assert check_config("none", None, named) == named
    with pytest.raises(ConfigError, match="dedup_header must be an HTTP header name"):
        check_config("hmac", None, {"secret": "x", "dedup_header": "a b"})


# -- the real daemon ------------------------------------------------------------------------


def _source(api, body: dict) -> dict:
    return api.data("POST", "/v1/sources", {"name": "src", **body}, status=201)


def _events(api) -> list[dict]:
    return api.data("GET", "/v1/events?limit=200")["items"]


def test_twilio_and_paddle_on_the_daemon(api, sink):
    dest = api.data("POST", "/v1/destinations", {"name": "s", "url": sink.url + "/hook"}, 201)
    twilio_src = _source(
        api, {"auth_mode": "provider", "provider": "twilio",
              "verification_config": {"secret": TWILIO_TOKEN}}
    )  # fmt: skip
    api.data(
        "POST",
        "/v1/routes",
        {"source_id": twilio_src["id"], "destination_id": dest["id"],
         "event_type_pattern": "message.*"},
        201,
    )  # fmt: skip
    url = twilio_src["ingest_url"] + "?site=eu"
    sig = RequestValidator(TWILIO_TOKEN).compute_signature(url, PARAMS)
    headers = {"X-Twilio-Signature": sig, "Content-Type": FORM}
    resp = requests.post(url, data=urlencode(PARAMS), headers=headers, timeout=10)
    assert resp.status_code == 202, resp.text
    assert resp.json()["data"]["status"] == "queued"  # the route's pattern matched
    wait_for(lambda: urlencode(PARAMS).encode() in sink.bodies(), what="twilio at the sink")
    # The query string is signed: the same request to the bare ingest URL is refused.
    bare = requests.post(twilio_src["ingest_url"], data=PARAMS, headers=headers, timeout=10)
    assert bare.status_code == 401, bare.text
    stored = [e for e in _events(api) if e["source_id"] == twilio_src["id"]]
    assert [e["event_type"] for e in stored] == ["message.delivered"]
    assert PUBLIC_URL not in stored[0]["headers"]

    paddle_src = _source(
        api, {"auth_mode": "provider", "provider": "paddle",
              "verification_config": {"secret": PADDLE_SECRET}}
    )  # fmt: skip
    ok = requests.post(
        paddle_src["ingest_url"], data=PADDLE_BODY, headers=paddle_header(ts=int(time.time()))
    )
    assert ok.status_code == 202, ok.text
    stale = paddle_header(ts=int(time.time()) - 3600)
    assert (
        requests.post(paddle_src["ingest_url"], data=PADDLE_BODY, headers=stale).status_code == 401
    )
    types = [e["event_type"] for e in _events(api) if e["source_id"] == paddle_src["id"]]
    assert types == ["transaction.completed"]


def _stripe_post(url: str, secret: str, event_id: str, t: int | None = None):
    body = json.dumps({"id": event_id, "type": "invoice.paid"})
    header = stripe.WebhookSignature.generate_signature_header(body, secret, t)
    return requests.post(url, data=body, headers={"Stripe-Signature": header}, timeout=10)


def test_dedup_on_the_providers_id(api, sink, module_db_url):
    secret = "whsec_dedup_secret"
    source = _source(
        api, {"auth_mode": "provider", "provider": "stripe",
              "verification_config": {"secret": secret}}
    )  # fmt: skip
    dest = api.data("POST", "/v1/destinations", {"name": "s", "url": sink.url + "/hook"}, 201)
    api.data("POST", "/v1/routes", {"source_id": source["id"], "destination_id": dest["id"]}, 201)
    url = source["ingest_url"]
    # A forged copy is refused before dedup: it cannot burn the id.
    forged = _stripe_post(url, "whsec_attacker", "evt_A")
    assert forged.status_code == 401
    first = _stripe_post(url, secret, "evt_A")
    assert first.status_code == 202, first.text
    # Stripe's retry: same event, new timestamp and signature.
    retry = _stripe_post(url, secret, "evt_A", int(time.time()) + 1)
    assert retry.status_code == 200, retry.text
    answer = retry.json()["data"]
    assert answer["id"] == first.json()["data"]["id"] and answer["duplicate"] is True
    assert answer["status"] in EVENT_STATUSES  # the first event's status now
    assert _stripe_post(url, secret, "evt_B").status_code == 202
    assert len(_events(api)) == 2
    wait_for(lambda: len(sink.bodies()) == 2, what="two deliveries")
    # Another source does not share the first one's ids.
    other = _source(
        api, {"auth_mode": "provider", "provider": "stripe",
              "verification_config": {"secret": secret}}
    )  # fmt: skip
    assert _stripe_post(other["ingest_url"], secret, "evt_A").status_code == 202
    # An expired key does not block: the next copy is a new event.
    with psycopg2.connect(module_db_url) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE ingest_dedup SET expires_at = now() - interval '1 second'"
            " WHERE source_id = %s AND dedup_key = 'evt_A'",
            (source["id"],),
        )
    again = _stripe_post(url, secret, "evt_A")
    assert again.status_code == 202, again.text
    assert again.json()["data"]["id"] != first.json()["data"]["id"]
    assert _stripe_post(url, secret, "evt_A").json()["data"]["id"] == again.json()["data"]["id"]
    conn.close()


def test_dedup_header_for_a_source_without_provider(api):
    source = _source(api, {"verification_config": {"dedup_header": "X-Request-Id"}})
    assert source["verification_config"] == {"dedup_header": "X-Request-Id"}
    post = lambda rid: requests.post(  # noqa: E731
        source["ingest_url"], data=b"{}", headers={"X-Request-Id": rid}, timeout=10
    )
    assert post("r-1").status_code == 202
    assert post("r-1").status_code == 200
    assert post("r-2").status_code == 202
    assert requests.post(source["ingest_url"], data=b"{}").status_code == 202  # no id: kept
    assert len(_events(api)) == 3


def test_fifty_concurrent_copies_make_one_event(api, sink):
    source = _source(
        api, {"auth_mode": "provider", "provider": "standard_webhooks",
              "verification_config": {"secret": STANDARD_SECRET}}
    )  # fmt: skip
    dest = api.data("POST", "/v1/destinations", {"name": "s", "url": sink.url + "/hook"}, 201)
    api.data("POST", "/v1/routes", {"source_id": source["id"], "destination_id": dest["id"]}, 201)
    body = json.dumps({"type": "order.created", "n": uuid.uuid4().hex})
    now = int(time.time())
    signed = standardwebhooks.Webhook(STANDARD_SECRET).sign(
        "msg_concurrent", dt.datetime.fromtimestamp(now, tz=dt.UTC), body
    )
    headers = {"webhook-id": "msg_concurrent", "webhook-timestamp": str(now),
               "webhook-signature": signed}  # fmt: skip
    barrier = threading.Barrier(50)
    answers: list[requests.Response] = []

    def post() -> None:
        barrier.wait()
        answers.append(requests.post(source["ingest_url"], data=body, headers=headers, timeout=30))

    threads = [threading.Thread(target=post) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 49 + [202], codes
    ids = {r.json()["data"]["id"] for r in answers}
    assert len(ids) == 1
    assert sum(bool(r.json()["data"].get("duplicate")) for r in answers) == 49
    assert len(_events(api)) == 1
    wait_for(lambda: body.encode() in sink.bodies(), what="the one delivery")
    time.sleep(0.5)  # a second delivery, if one had been queued, would arrive by now
    assert sink.bodies().count(body.encode()) == 1


JUNK = {
    "empty": "",
    "huge": "v1=" + "a" * 6000,
    "non_ascii": "t=1,v1=é€🙂".encode(),
    "many_parts": ",".join(["v1=00", "t=1", "h1=00", "ts=1", "v1,AA=="] * 300)[:7000],
    "many_semicolons": ";".join(["ts=1", "h1=zz"] * 700),
}
JUNK_SOURCES = {
    "stripe": ("Stripe-Signature",),
    "github": ("X-Hub-Signature-256",),
    "shopify": ("X-Shopify-Hmac-Sha256",),
    "slack": ("X-Slack-Signature", "X-Slack-Request-Timestamp"),
    "standard_webhooks": ("webhook-signature", "webhook-timestamp", "webhook-id"),
    "svix": ("svix-signature", "svix-timestamp", "svix-id"),
    "twilio": ("X-Twilio-Signature",),
    "paddle": ("Paddle-Signature",),
}


def test_junk_in_every_signature_header_is_a_4xx(api):
    for provider, names in JUNK_SOURCES.items():
        secret = STANDARD_SECRET if provider in ("standard_webhooks", "svix") else "s3cret"
        source = _source(
            api, {"auth_mode": "provider", "provider": provider,
                  "verification_config": {"secret": secret}}
        )  # fmt: skip
        for name in names:
            for kind, value in JUNK.items():
                headers = {n: "1" for n in names} | {name: value}
                resp = requests.post(source["ingest_url"], data=b"{}", headers=headers, timeout=10)
                assert 400 <= resp.status_code < 500, (provider, name, kind, resp.text)
                assert resp.json()["error"], (provider, name, kind)
        if provider == "twilio":  # the host it signs may come from the request
            for host in ("[::1", "a b", "é.example", "x" * 2000, "h:99999", ""):
                headers = {"X-Twilio-Signature": "AAAA", "Host": host, "X-Forwarded-Proto": host}
                resp = requests.post(source["ingest_url"], data=b"{}", headers=headers)
                assert 400 <= resp.status_code < 500, (host, resp.text)
    generic = _source(api, {"auth_mode": "hmac", "verification_config": {"secret": "x"}})
    for kind, value in JUNK.items():
        resp = requests.post(generic["ingest_url"], data=b"{}", headers={"X-Signature": value})
        assert 400 <= resp.status_code < 500 and resp.json()["error"], (kind, resp.text)
    assert _events(api) == []


# -- GetHook SDK compatibility ---------------------------------------------------------------


def test_shared_secret_auth_mode(api):
    source = _source(api, {"auth_mode": "shared_secret", "verification_config": {"secret": "k"}})
    assert source["auth_mode"] == "shared_secret"
    body = b'{"a":1}'
    good = {"X-Signature": hmac.new(b"k", body, hashlib.sha256).hexdigest()}
    assert requests.post(source["ingest_url"], data=body, headers=good).status_code == 202
    bad = {"X-Signature": hmac.new(b"x", body, hashlib.sha256).hexdigest()}
    assert requests.post(source["ingest_url"], data=body, headers=bad).status_code == 401
    # With a provider it is that provider's scheme.
    stripe_src = _source(
        api, {"auth_mode": "shared_secret", "provider": "stripe",
              "verification_config": {"secret": "whsec_x"}}
    )  # fmt: skip
    assert _stripe_post(stripe_src["ingest_url"], "whsec_x", "evt_s").status_code == 202
    assert _stripe_post(stripe_src["ingest_url"], "whsec_y", "evt_t").status_code == 401


def test_custom_domain_types_of_the_sdk(api):
    for kind, stored in (("webhook", "ingest"), ("docs", "docs"), ("portal", "portal"),
                         ("ingest", "ingest"), ("api", "api")):  # fmt: skip
        domain = f"{kind}-{uuid.uuid4().hex[:8]}.example.com"
        created = api.data("POST", "/v1/custom-domains", {"domain": domain, "type": kind}, 201)
        assert created["type"] == stored
    resp = api.call("POST", "/v1/custom-domains", {"domain": "x.example.com", "type": "mail"})
    assert resp.status_code == 400 and "type must be one of" in resp.json()["error"]


def test_preset_catalogues_are_public(api_daemon):
    anon = Api(api_daemon.url)
    providers = {p["id"]: p for p in anon.data("GET", "/v1/provider-presets")}
    assert {"stripe", "twilio", "paddle", "generic_hmac"} <= set(providers)
    assert providers["twilio"]["header"] == "X-Twilio-Signature"
    assert anon.data("GET", "/v1/destination-presets")
    assert anon.call("GET", "/v1/sources").status_code == 401


def test_bare_api_key_in_authorization(api):
    for header in (api.key, f"Bearer {api.key}", f"bearer {api.key}"):
        resp = requests.get(api.base + "/v1/sources", headers={"Authorization": header})
        assert resp.status_code == 200, (header, resp.text)
    for header in ("hk_not-a-key", "hk_a hk_b", "Basic " + api.key, api.key[3:]):
        resp = requests.get(api.base + "/v1/sources", headers={"Authorization": header})
        assert resp.status_code == 401, header
        assert resp.json()["error"]


def test_expired_keys_are_claimed_again_and_deleted_in_bounded_batches(db_url, monkeypatch):
    """The batch writer on its own: a provider id stores one event, copies in one batch and
    in later batches answer as duplicates, an expired id is taken over; cleanup is bounded."""
    from gethookd.services import committer
    from gethookd.services.committer import Pending, store

    # The writer's own occasional cleanup would race the counts below: it is tested here.
    monkeypatch.setattr(committer, "DEDUP_CLEANUP_CHANCE", 0.0)

    database = Database(db_url, maxconn=1)

    def pending(key: str) -> Pending:
        return Pending(
            account_id=account,
            direction="inbound",
            source_id=source,
            event_type=None,
            headers={},
            body=b"{}",
            content_type="application/json",
            created_by="test",
            targets=[],
            check_source=True,
            dedup_key=key,
        )

    try:
        with database.transaction() as cur:
            cur.raw.execute("INSERT INTO accounts (name) VALUES (%s) RETURNING id", ("a",))
            account = cur.raw.fetchone()["id"]
            cur.raw.execute(
                "INSERT INTO sources (account_id, name, path_token) VALUES (%s, 's', %s)"
                " RETURNING id",
                (account, uuid.uuid4().hex),
            )
            source = cur.raw.fetchone()["id"]
            first, copy, other = store(cur.raw, [pending("k"), pending("k"), pending("j")])
            assert not first.get("duplicate") and not other.get("duplicate")
            assert copy == {"id": first["id"], "status": first["status"], "duplicate": True}
            [later] = store(cur.raw, [pending("k")])  # live: a duplicate of the first
            assert later["duplicate"] and later["id"] == first["id"]
            cur.raw.execute("UPDATE ingest_dedup SET expires_at = now() - interval '1 hour'")
            [again] = store(cur.raw, [pending("k")])  # expired: taken over, a new event
            assert not again.get("duplicate") and again["id"] != first["id"]
            cur.raw.execute("SELECT count(*) AS n FROM events")
            assert cur.raw.fetchone()["n"] == 3
            for i in range(5):
                cur.raw.execute(
                    "INSERT INTO ingest_dedup (source_id, dedup_key, expires_at)"
                    " VALUES (%s, %s, now() - interval '1 hour')",
                    (source, f"old-{i}"),
                )
            cur.run("dedup_delete_expired", {"limit": 3})
            cur.raw.execute("SELECT dedup_key FROM ingest_dedup ORDER BY dedup_key")
            left = [r["dedup_key"] for r in cur.raw.fetchall()]
        # 3 of the 6 expired rows ("j" and the 5 old ones) are deleted; the live "k" is kept
        assert len(left) == 4 and "k" in left
    finally:
        database.close()
