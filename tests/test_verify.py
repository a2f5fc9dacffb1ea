"""Inbound verification: each scheme against signatures computed here independently, and
the real daemon refusing forged webhooks with 401 while storing nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
import requests

from gethookd.verify import ConfigError, VerificationFailed, check_config, verify_request
from helpers import wait_for

NOW = 1_700_000_000.0
BODY = b'{"id":"evt_1","type":"invoice.paid"}'
SECRET = "whsec_test_secret_value"


def hmac_hex(secret: bytes | str, message: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def hmac_b64(secret: bytes | str, message: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def check(mode, provider, config, headers, body=BODY, now=NOW):
    verify_request(mode, provider, config, {k.lower(): v for k, v in headers.items()}, body, now)


def refused(mode, provider, config, headers, body=BODY, now=NOW) -> str:
    with pytest.raises(VerificationFailed) as info:
        check(mode, provider, config, headers, body, now)
    reason = info.value.reason
    for name in ("secret", "password", "token", "value"):  # never a credential
        assert not config.get(name) or config[name] not in reason, reason
    return reason


# -- stripe --------------------------------------------------------------------------------


def stripe_header(secret=SECRET, t=int(NOW), body=BODY, extra=()):
    sig = hmac_hex(secret, f"{t}.".encode() + body)
    return {"Stripe-Signature": ",".join([f"t={t}", *extra, f"v1={sig}"])}


@pytest.mark.parametrize("mode", ["provider", "hmac"])
def test_stripe(mode):
    cfg = {"secret": SECRET}
    check(mode, "stripe", cfg, stripe_header())
    # Any v1 may match (secret roll): a wrong one first, the right one second.
    check(mode, "stripe", cfg, stripe_header(extra=("v1=" + "00" * 32, "v0=abc")))
    assert "matches" in refused(mode, "stripe", cfg, stripe_header(secret="whsec_other"))
    assert "matches" in refused(mode, "stripe", cfg, stripe_header(), body=BODY + b" ")
    assert "missing Stripe-Signature" in refused(mode, "stripe", cfg, {})
    stale = refused(mode, "stripe", cfg, stripe_header(t=int(NOW) - 301))
    assert "301 seconds old" in stale and "300 second tolerance" in stale
    assert "future" in refused(mode, "stripe", cfg, stripe_header(t=int(NOW) + 400))
    assert "no timestamp" in refused(mode, "stripe", cfg, {"Stripe-Signature": "v1=abcd"})
    assert "no v1" in refused(mode, "stripe", cfg, {"Stripe-Signature": f"t={int(NOW)}"})
    assert "malformed" in refused(mode, "stripe", cfg, {"Stripe-Signature": "garbage"})
    bad_hex = {"Stripe-Signature": f"t={int(NOW)},v1=zz"}
    assert "not hexadecimal" in refused(mode, "stripe", cfg, bad_hex)
    assert "Unix timestamp" in refused(mode, "stripe", cfg, {"Stripe-Signature": "t=x,v1=00"})


def test_stripe_tolerance_is_configurable():
    cfg = check_config("provider", "stripe", {"secret": SECRET, "tolerance_seconds": 600})
    assert cfg["tolerance_seconds"] == "600"
    check("provider", "stripe", cfg, stripe_header(t=int(NOW) - 500))
    assert "600 second" in refused("provider", "stripe", cfg, stripe_header(t=int(NOW) - 601))


# -- github, shopify, generic hmac ---------------------------------------------------------


def test_github():
    cfg = {"secret": "gh-secret"}
    good = {"X-Hub-Signature-256": "sha256=" + hmac_hex("gh-secret", BODY)}
    check("provider", "github", cfg, good)
    check("hmac", "github", cfg, good)
    wrong = {"X-Hub-Signature-256": "sha256=" + hmac_hex("other", BODY)}
    assert "does not match" in refused("provider", "github", cfg, wrong)
    assert "does not match" in refused("provider", "github", cfg, good, body=b"{}")
    assert "missing X-Hub-Signature-256" in refused("provider", "github", cfg, {})
    sha1 = {"X-Hub-Signature-256": "sha1=" + hmac_hex("gh-secret", BODY)}
    assert "sha256=" in refused("provider", "github", cfg, sha1)
    assert "hexadecimal" in refused(
        "provider", "github", cfg, {"X-Hub-Signature-256": "sha256=xyz"}
    )


def test_shopify():
    cfg = {"secret": "shp-secret"}
    check("provider", "shopify", cfg, {"X-Shopify-Hmac-Sha256": hmac_b64("shp-secret", BODY)})
    wrong = {"X-Shopify-Hmac-Sha256": hmac_b64("other", BODY)}
    assert "does not match" in refused("provider", "shopify", cfg, wrong)
    tampered = {"X-Shopify-Hmac-Sha256": hmac_b64("shp-secret", BODY + b"x")}
    assert "does not match" in refused("provider", "shopify", cfg, tampered)
    assert "missing X-Shopify-Hmac-Sha256" in refused("provider", "shopify", cfg, {})
    assert "base64" in refused("provider", "shopify", cfg, {"X-Shopify-Hmac-Sha256": "%%%"})


def test_generic_hmac_defaults_and_options():
    check("hmac", None, {"secret": "s3cret"}, {"X-Signature": hmac_hex("s3cret", BODY)})
    check("hmac", "acme", {"secret": "s3cret"}, {"X-Signature": hmac_hex("s3cret", BODY)})
    cfg = {"secret": "s3cret", "header": "X-Acme-Sig", "encoding": "base64", "prefix": "sha256="}
    check("hmac", None, cfg, {"X-Acme-Sig": "sha256=" + hmac_b64("s3cret", BODY)})
    wrong = {"X-Acme-Sig": "sha256=" + hmac_b64("nope", BODY)}
    assert "does not match" in refused("hmac", None, cfg, wrong)
    assert "missing X-Acme-Sig" in refused("hmac", None, cfg, {"X-Signature": "abc"})
    no_prefix = {"X-Acme-Sig": hmac_b64("s3cret", BODY)}
    assert "must start with sha256=" in refused("hmac", None, cfg, no_prefix)
    assert "base64" in refused("hmac", None, cfg, {"X-Acme-Sig": "sha256=!!"})


# -- slack and standard webhooks -----------------------------------------------------------


def slack_headers(secret="slack-secret", ts=int(NOW), body=BODY):
    sig = "v0=" + hmac_hex(secret, f"v0:{ts}:".encode() + body)
    return {"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": str(ts)}


def test_slack():
    cfg = {"secret": "slack-secret"}
    check("provider", "slack", cfg, slack_headers())
    assert "does not match" in refused("provider", "slack", cfg, slack_headers(secret="x"))
    assert "does not match" in refused("provider", "slack", cfg, slack_headers(), body=b"{}")
    headers = slack_headers()
    del headers["X-Slack-Request-Timestamp"]
    assert "missing X-Slack-Request-Timestamp" in refused("provider", "slack", cfg, headers)
    assert "seconds old" in refused("provider", "slack", cfg, slack_headers(ts=int(NOW) - 600))
    malformed = {**slack_headers(), "X-Slack-Signature": "v1=abcd"}
    assert "v0=" in refused("provider", "slack", cfg, malformed)


def standard_headers(key: bytes, msg_id="msg_1", ts=int(NOW), body=BODY, prefix="webhook"):
    sig = hmac_b64(key, f"{msg_id}.{ts}.".encode() + body)
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(ts),
        f"{prefix}-signature": f"v1,{'A' * 43}= v1,{sig}",
    }


@pytest.mark.parametrize("provider", ["standard_webhooks", "svix"])
def test_standard_webhooks(provider):
    key = b"0123456789abcdef0123456789abcdef"
    cfg = {"secret": "whsec_" + base64.b64encode(key).decode()}
    check("provider", provider, cfg, standard_headers(key))
    check("provider", provider, cfg, standard_headers(key, prefix="svix"))
    assert "matches" in refused("provider", provider, cfg, standard_headers(b"other key"))
    assert "matches" in refused("provider", provider, cfg, standard_headers(key), body=b"{}")
    assert "missing webhook-signature" in refused("provider", provider, cfg, {})
    stale = standard_headers(key, ts=int(NOW) - 301)
    assert "tolerance" in refused("provider", provider, cfg, stale)
    malformed = {**standard_headers(key), "webhook-signature": "garbage"}
    assert "malformed" in refused("provider", provider, cfg, malformed)
    # A secret without whsec_ is used as its UTF-8 bytes, as gethookd's own signing does.
    check("provider", provider, {"secret": "plain"}, standard_headers(b"plain"))


# -- credentials ---------------------------------------------------------------------------


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic():
    cfg = {"username": "acme", "password": "hunter22"}
    check("basic", None, cfg, basic("acme", "hunter22"))
    assert "wrong username or password" in refused("basic", None, cfg, basic("acme", "nope"))
    assert "wrong username or password" in refused("basic", None, cfg, basic("eve", "hunter22"))
    assert "missing Authorization" in refused("basic", None, cfg, {})
    assert "Basic scheme" in refused("basic", None, cfg, {"Authorization": "Bearer x"})
    assert "not base64" in refused("basic", None, cfg, {"Authorization": "Basic ***"})
    no_colon = {"Authorization": "Basic " + base64.b64encode(b"acme").decode()}
    assert "username:password" in refused("basic", None, cfg, no_colon)


def test_bearer_and_api_key():
    check("bearer", None, {"token": "tok-123456"}, {"Authorization": "Bearer tok-123456"})
    wrong = {"Authorization": "Bearer tok-654321"}
    assert "wrong bearer token" in refused("bearer", None, {"token": "tok-123456"}, wrong)
    assert "missing Authorization" in refused("bearer", None, {"token": "tok-123456"}, {})
    cfg = {"header": "X-Api-Key", "value": "key-abcdef"}
    check("api_key", None, cfg, {"x-api-key": "key-abcdef"})
    assert "wrong key" in refused("api_key", None, cfg, {"X-Api-Key": "key-zzzzzz"})
    assert "missing X-Api-Key" in refused("api_key", None, cfg, {})
    # Non-ASCII from the wire is refused, not an exception.
    assert "wrong key" in refused("api_key", None, cfg, {"X-Api-Key": "ключ"})


def test_none_accepts_anything():
    check("none", None, {}, {})
    check("none", "stripe", {}, {})


def test_stored_config_that_cannot_verify_fails_closed():
    assert "secret is required" in refused("hmac", "stripe", {}, stripe_header())
    assert "provider must be one of" in refused("provider", "acme", {"secret": "s3cret"}, {})


# -- config validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "provider", "config", "message"),
    [
        ("hmac", None, None, "verification_config.secret is required for auth_mode hmac"),
        ("hmac", "stripe", {}, "verification_config.secret is required for provider stripe"),
        ("hmac", None, {"secret": ""}, "verification_config.secret must not be empty"),
        ("hmac", None, {"secret": 5}, "verification_config.secret must be a string"),
        ("hmac", None, {"secret": "x", "encoding": "hexx"}, "encoding must be one of"),
        ("hmac", None, {"secret": "x", "header": "Bad Header"}, "header must be an HTTP"),
        ("hmac", None, {"secret": "a\nb"}, "single line"),
        ("provider", None, {"secret": "x"}, "provider must be one of"),
        ("provider", "acme", {"secret": "x"}, "provider must be one of"),
        ("provider", "github", {"secret": "x", "header": "X"}, "takes no header"),
        ("provider", "stripe", {"secret": "x", "tolerance_seconds": 0}, "between 1 and 86400"),
        ("provider", "stripe", {"secret": "x", "tolerance_seconds": "5m"}, "whole number"),
        ("provider", "svix", {"secret": "whsec_!!"}, "base64"),
        ("basic", None, {"username": "a"}, "verification_config.password is required"),
        ("basic", None, {"username": "a:b", "password": "p"}, "must not contain ':'"),
        ("bearer", None, {}, "verification_config.token is required for auth_mode bearer"),
        ("api_key", None, {"value": "v"}, "verification_config.header is required"),
        ("none", None, {"secret": "x"}, "not used with auth_mode none"),
    ],
)
def test_config_errors(mode, provider, config, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_config(mode, provider, config)


# -- the real daemon -----------------------------------------------------------------------


def _total(api) -> int:
    return api.data("GET", "/v1/events")["total"]


def _pipeline(api, sink, source_body: dict) -> dict:
    source = api.data("POST", "/v1/sources", source_body, status=201)
    dest = api.data("POST", "/v1/destinations", {"name": "sink", "url": sink.url + "/hook"}, 201)
    api.data("POST", "/v1/routes", {"source_id": source["id"], "destination_id": dest["id"]}, 201)
    return source


def _accepted_and_delivered(api, sink, url: str, body: bytes, headers: dict) -> None:
    resp = requests.post(url, data=body, headers=headers, timeout=10)
    assert resp.status_code == 202, resp.text
    wait_for(lambda: body in sink.bodies(), what="the verified webhook at the sink")


def _refused(api, url: str, body: bytes, headers: dict) -> str:
    before = _total(api)
    resp = requests.post(url, data=body, headers=headers, timeout=10)
    assert resp.status_code == 401, resp.text
    error = resp.json()["error"]
    assert error.startswith("signature verification failed: ")
    assert _total(api) == before
    return error


def test_stripe_source_on_the_daemon(api, api_daemon, sink):
    secret = "whsec_daemon_stripe_secret"
    source = _pipeline(
        api,
        sink,
        {"name": "stripe", "auth_mode": "provider", "provider": "stripe",
         "verification_config": {"secret": secret}},
    )  # fmt: skip
    assert secret not in str(source["verification_config"])
    url, now = source["ingest_url"], int(time.time())
    _accepted_and_delivered(api, sink, url, BODY, stripe_header(secret, t=now))
    assert _total(api) == 1
    forged = stripe_header("whsec_attacker", t=now, body=b'{"forged":true}')
    error = _refused(api, url, b'{"forged":true}', forged)
    assert "v1 signature" in error and secret not in error
    _refused(api, url, BODY, stripe_header(secret, t=now - 3600))
    _refused(api, url, BODY, {})
    line = f"source {source['id']}: signature verification failed: missing Stripe-Signature"
    wait_for(lambda: line in api_daemon.log(), what="the warning in the daemon log")
    assert secret not in api_daemon.log()


def test_github_source_on_the_daemon(api, sink):
    source = _pipeline(
        api,
        sink,
        {"name": "gh", "auth_mode": "hmac", "provider": "github",
         "verification_config": {"secret": "gh-daemon-secret"}},
    )  # fmt: skip
    body = b'{"zen":"Keep it logically awesome."}'
    good = {"X-Hub-Signature-256": "sha256=" + hmac_hex("gh-daemon-secret", body)}
    _accepted_and_delivered(api, sink, source["ingest_url"], body, good)
    forged = {"X-Hub-Signature-256": "sha256=" + hmac_hex("guess", body)}
    assert "does not match" in _refused(api, source["ingest_url"], body, forged)
    _refused(api, source["ingest_url"], body + b" ", good)


def test_basic_source_on_the_daemon(api, sink):
    source = _pipeline(
        api,
        sink,
        {"name": "basic", "auth_mode": "basic",
         "verification_config": {"username": "acme", "password": "s3cret-pass"}},
    )  # fmt: skip
    assert source["verification_config"]["username"] == "acme"
    assert "s3cret" not in str(source["verification_config"])
    body = b'{"basic":true}'
    _accepted_and_delivered(api, sink, source["ingest_url"], body, basic("acme", "s3cret-pass"))
    assert "wrong username" in _refused(api, source["ingest_url"], body, basic("acme", "x"))
    _refused(api, source["ingest_url"], body, {})
    stored = api.data("GET", "/v1/events")["items"][0]
    assert "authorization" not in stored["headers"]


def test_source_creation_checks_verification_config(api):
    def error(body: dict) -> str:
        resp = api.call("POST", "/v1/sources", {"name": "s", **body})
        assert resp.status_code == 400, resp.text
        return resp.json()["error"]

    assert error({"auth_mode": "hmac"}) == (
        "verification_config.secret is required for auth_mode hmac"
    )
    assert "verification_config.secret is required for provider stripe" in error(
        {"auth_mode": "provider", "provider": "stripe", "verification_config": {}}
    )
    assert "provider must be one of" in error(
        {"auth_mode": "provider", "provider": "paypal", "verification_config": {"secret": "x"}}
    )
    assert "provider must be one of" in error({"auth_mode": "provider"})
    assert "verification_config.password is required" in error(
        {"auth_mode": "basic", "verification_config": {"username": "u"}}
    )
    assert "verification_config.token must not be empty" in error(
        {"auth_mode": "bearer", "verification_config": {"token": ""}}
    )
    assert "verification_config.header" in error(
        {"auth_mode": "api_key", "verification_config": {"header": "a b", "value": "v"}}
    )
    assert "not used with auth_mode none" in error({"verification_config": {"secret": "x"}})
    assert "takes no colour" in error(
        {"auth_mode": "hmac", "verification_config": {"secret": "x", "colour": "red"}}
    )
    created = api.data(
        "POST",
        "/v1/sources",
        {"name": "svix", "auth_mode": "provider", "provider": "svix",
         "verification_config": {"secret": "whsec_MDEyMzQ1Njc4OWFiY2RlZg==",
                                 "tolerance_seconds": 120}},
        201,
    )  # fmt: skip
    assert created["verification_config"]["tolerance_seconds"] == "120"
    assert "MDEyMzQ1" not in created["verification_config"]["secret"]
