"""Every endpoint of the GetHook contract against a real `gethookd run`: success and errors."""

from __future__ import annotations

import base64
import uuid

import pytest
import requests

from helpers import Api, wait_for

UUID_LEN = 36


def error_of(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    body = resp.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


# -- health, auth, accounts ----------------------------------------------------------------


def test_health_and_readiness(api_daemon):
    anon = Api(api_daemon.url)
    assert anon.data("GET", "/healthz") == {"status": "ok"}
    assert anon.data("GET", "/readyz") == {"status": "ready"}


def test_register_login_and_errors(api_daemon):
    anon = Api(api_daemon.url)
    email = f"reg-{uuid.uuid4().hex[:8]}@example.com"
    boot = anon.data(
        "POST", "/v1/auth/register", {"email": email, "password": "s3cret-pass", "name": "Co"}, 201
    )
    assert set(boot) == {"account", "api_key"}
    assert boot["account"]["email"] == email and boot["account"]["name"] == "Co"
    assert {"id", "name", "plan", "created_at"} <= set(boot["account"])
    key = boot["api_key"]
    assert key["key"].startswith("hk_") and key["key"].startswith(key["key_prefix"])
    assert key["created_at"].endswith("Z")

    again = anon.call("POST", "/v1/auth/register", {"email": email, "password": "s3cret-pass"})
    assert "already exists" in error_of(again, 409)

    login = anon.data("POST", "/v1/auth/login", {"email": email, "password": "s3cret-pass"})
    assert login["account"]["id"] == boot["account"]["id"]
    assert "password_hash" not in login["account"]
    Api(api_daemon.url, login["api_key"]["key"]).data("GET", "/v1/sources")

    bad = anon.call("POST", "/v1/auth/login", {"email": email, "password": "wrong-pass"})
    assert "wrong email or password" in error_of(bad, 401)
    nobody = anon.call("POST", "/v1/auth/login", {"email": "no@x.io", "password": "whatever1"})
    error_of(nobody, 401)

    assert "email" in error_of(anon.call("POST", "/v1/auth/register", {"password": "x" * 9}), 400)
    assert "password" in error_of(
        anon.call("POST", "/v1/auth/register", {"email": "a@b.io", "password": "short"}), 400
    )
    assert "email" in error_of(
        anon.call("POST", "/v1/auth/register", {"email": "nope", "password": "long-enough"}), 400
    )
    assert "email must be a string" in error_of(
        anon.call("POST", "/v1/auth/register", {"email": 5, "password": "long-enough"}), 400
    )


def test_create_account_without_login(api_daemon):
    anon = Api(api_daemon.url)
    boot = anon.data("POST", "/v1/accounts", {"name": "Bootstrap Inc"}, 201)
    assert boot["account"]["name"] == "Bootstrap Inc"
    Api(api_daemon.url, boot["api_key"]["key"]).data("GET", "/v1/api-keys")
    assert "name is required" in error_of(anon.call("POST", "/v1/accounts", {}), 400)


@pytest.mark.parametrize(
    ("raw", "content_type", "fragment"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "JSON object"),
        (b"", "application/json", "JSON object"),
        (b"\xff\xfe", "application/json", "not valid JSON"),
        (b'"text"', "text/plain", "JSON object"),
    ],
)
def test_malformed_json_bodies_are_400(api, raw, content_type, fragment):
    resp = api.call("POST", "/v1/sources", data=raw, headers={"Content-Type": content_type})
    assert fragment in error_of(resp, 400)


def test_oversized_json_body_is_413(api):
    resp = api.call("POST", "/v1/sources", {"name": "x" * (300 * 1024)})
    error_of(resp, 413)


def test_missing_invalid_and_revoked_keys(api_daemon, api):
    anon = Api(api_daemon.url)
    assert "Bearer" in error_of(anon.call("GET", "/v1/sources"), 401)
    error_of(Api(api_daemon.url, "hk_not-a-real-key").call("GET", "/v1/sources"), 401)
    resp = anon.call("GET", "/v1/sources", headers={"Authorization": "Basic abc"})
    error_of(resp, 401)

    extra = api.data("POST", "/v1/api-keys", {"name": "ci"}, 201)
    assert extra["name"] == "ci" and extra["key"].startswith("hk_")
    listed = api.data("GET", "/v1/api-keys")
    assert extra["id"] in [k["id"] for k in listed]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    other = Api(api_daemon.url, extra["key"])
    other.data("GET", "/v1/sources")
    resp = api.call("DELETE", f"/v1/api-keys/{extra['id']}")
    assert resp.status_code == 204 and resp.content == b""
    # Revocation is immediate on every API worker: try several times.
    for _ in range(6):
        error_of(other.call("GET", "/v1/sources"), 401)
    revoked = [k for k in api.data("GET", "/v1/api-keys") if k["id"] == extra["id"]]
    assert revoked[0]["revoked_at"]
    error_of(api.call("DELETE", f"/v1/api-keys/{uuid.uuid4()}"), 404)
    assert "UUID" in error_of(api.call("DELETE", "/v1/api-keys/not-a-uuid"), 400)


# -- presets, sources, destinations, routes -------------------------------------------------


def test_presets(api):
    providers = api.data("GET", "/v1/provider-presets")
    assert {"stripe", "github", "shopify", "slack"} <= {p["id"] for p in providers}
    for preset in providers:
        assert set(preset) == {
            "id", "name", "category", "auth_mode", "header", "description", "docs_url", "color"
        }  # fmt: skip
    dests = api.data("GET", "/v1/destination-presets")
    assert dests and all(d["auth_type"] in ("none", "bearer", "api_key") for d in dests)


def test_sources_crud(api, api_daemon):
    src = api.data(
        "POST",
        "/v1/sources",
        {
            "name": "Stripe prod",
            "auth_mode": "hmac",
            "provider": "stripe",
            "verification_config": {"secret": "whsec_supersecretvalue123"},
        },
        201,
    )
    assert src["ingest_url"] == f"{api_daemon.url}/ingest/{src['path_token']}"
    assert src["status"] == "active" and src["auth_mode"] == "hmac"
    assert "supersecret" not in str(src["verification_config"])
    assert api.data("GET", f"/v1/sources/{src['id']}")["name"] == "Stripe prod"
    assert src["id"] in [s["id"] for s in api.data("GET", "/v1/sources")]
    assert "supersecret" not in api.call("GET", "/v1/sources").text

    assert "name is required" in error_of(api.call("POST", "/v1/sources", {}), 400)
    assert "auth_mode" in error_of(
        api.call("POST", "/v1/sources", {"name": "x", "auth_mode": "magic"}), 400
    )
    assert "verification_config" in error_of(
        api.call("POST", "/v1/sources", {"name": "x", "verification_config": "nope"}), 400
    )
    assert "UUID" in error_of(api.call("GET", "/v1/sources/123"), 400)
    error_of(api.call("GET", f"/v1/sources/{uuid.uuid4()}"), 404)

    assert api.call("DELETE", f"/v1/sources/{src['id']}").status_code == 204
    error_of(api.call("GET", f"/v1/sources/{src['id']}"), 404)
    error_of(api.call("DELETE", f"/v1/sources/{src['id']}"), 404)
    resp = requests.post(src["ingest_url"], data=b"{}")
    assert "ingest URL" in error_of(resp, 404)


def test_destinations_crud_and_secrets(api):
    dest = api.data(
        "POST",
        "/v1/destinations",
        {
            "name": "orders",
            "url": "https://orders.example.com/hook",
            "timeout_seconds": 12,
            "auth_config": {"type": "bearer", "token": "tok_very_secret_token"},
            "custom_headers": {"X-Team": "payments"},
        },
        201,
    )
    secret = dest["signing_secret"]
    assert secret.startswith("whsec_") and len(secret) > 20  # full, once
    assert dest["timeout_seconds"] == 12 and dest["active"] is True
    assert dest["custom_headers"] == {"X-Team": "payments"}
    assert "tok_very_secret_token" not in str(dest["auth_config"])
    assert dest["auth_config"]["type"] == "bearer"

    got = api.data("GET", f"/v1/destinations/{dest['id']}")
    assert (
        got["signing_secret"] != secret and secret not in api.call("GET", "/v1/destinations").text
    )
    assert "tok_very_secret_token" not in api.call("GET", f"/v1/destinations/{dest['id']}").text

    patched = api.data(
        "PATCH", f"/v1/destinations/{dest['id']}", {"active": False, "name": "orders-v2"}
    )
    assert patched["active"] is False and patched["name"] == "orders-v2"
    assert patched["url"] == "https://orders.example.com/hook"  # untouched
    cleared = api.data("PATCH", f"/v1/destinations/{dest['id']}", {"custom_headers": None})
    assert cleared.get("custom_headers") is None

    rotated = api.data("POST", f"/v1/destinations/{dest['id']}/rotate-secret", None)
    assert rotated["signing_secret"].startswith("whsec_") and rotated["signing_secret"] != secret
    chosen = api.data(
        "POST",
        f"/v1/destinations/{dest['id']}/rotate-secret",
        {"signing_secret": "my-own-secret-of-some-length"},
    )
    assert chosen["signing_secret"] == "my-own-secret-of-some-length"
    aliased = api.data(
        "POST", f"/v1/destinations/{dest['id']}/rotate-secret", {"secret": "another-secret-value"}
    )
    assert aliased["signing_secret"] == "another-secret-value"
    short = api.call("POST", f"/v1/destinations/{dest['id']}/rotate-secret", {"secret": "x"})
    assert "secret must be at least 16" in error_of(short, 400)

    bad = [
        ({"name": "x"}, "url is required"),
        ({"name": "x", "url": "ftp://example.com"}, "http"),
        ({"name": "x", "url": "not a url"}, "http"),
        ({"name": "x", "url": "https://e.com", "timeout_seconds": 0}, "timeout_seconds"),
        ({"name": "x", "url": "https://e.com", "timeout_seconds": "5"}, "timeout_seconds"),
        ({"name": "x", "url": "https://e.com", "auth_config": {"type": "oauth"}}, "auth_config"),
        ({"name": "x", "url": "https://e.com", "auth_config": {"type": "bearer"}}, "token"),
        ({"name": "x", "url": "https://e.com", "custom_headers": {"X": 1}}, "custom_headers"),
        ({"name": "x", "url": "https://e.com", "custom_headers": {"X": "a\r\nB: c"}}, "line"),
        ({"name": "x", "url": "https://e.com", "custom_headers": {"Bad Name": "v"}}, "header"),
        ({"name": "x", "url": "https://e.com", "custom_headers": {"X-Ok\n": "v"}}, "header"),
        ({"name": "x", "url": "https://e.com/\n"}, "url"),
        ({"name": "x", "url": "https://e.com", "signing_secret": "short"}, "signing_secret"),
        ({"name": "x", "url": "https://e.com", "signing_secret": "whsec_!!not*base64!!"}, "base64"),
    ]
    for body, fragment in bad:
        assert fragment in error_of(api.call("POST", "/v1/destinations", body), 400), body
    path = f"/v1/destinations/{dest['id']}"
    assert "nmae" in error_of(api.call("PATCH", path, {"nmae": "typo"}), 400)
    assert "active" in error_of(api.call("PATCH", path, {"active": "yes"}), 400)
    assert "url" in error_of(api.call("PATCH", path, {"url": None}), 400)
    error_of(api.call("PATCH", f"/v1/destinations/{uuid.uuid4()}", {"active": True}), 404)
    error_of(api.call("POST", f"/v1/destinations/{uuid.uuid4()}/rotate-secret"), 404)
    assert api.call("DELETE", path).status_code == 204
    error_of(api.call("GET", path), 404)


def test_routes_crud(api, sink):
    objs = api.pipeline(sink.url, event_type_pattern="order.*")
    route = objs["route"]
    assert route["retry_policy"] == {"max_attempts": 6, "backoff": "exponential"}
    assert route["event_type_pattern"] == "order.*" and route["active"] is True
    assert route["id"] in [r["id"] for r in api.data("GET", "/v1/routes")]

    patched = api.data(
        "PATCH",
        f"/v1/routes/{route['id']}",
        {"active": False, "retry_policy": {"max_attempts": 2, "backoff": "linear"}},
    )
    assert patched["active"] is False
    assert patched["retry_policy"] == {"max_attempts": 2, "backoff": "linear"}
    assert patched["event_type_pattern"] == "order.*"

    dest_id = objs["destination"]["id"]
    bad = [
        ({}, "destination_id is required"),
        ({"destination_id": "nope"}, "UUID"),
        ({"destination_id": dest_id, "retry_policy": {"max_attempts": 0}}, "max_attempts"),
        ({"destination_id": dest_id, "retry_policy": {"backoff": "random"}}, "backoff"),
        ({"destination_id": dest_id, "retry_policy": [1]}, "retry_policy"),
    ]
    for body, fragment in bad:
        assert fragment in error_of(api.call("POST", "/v1/routes", body), 400), body
    error_of(api.call("POST", "/v1/routes", {"destination_id": str(uuid.uuid4())}), 404)
    error_of(
        api.call("POST", "/v1/routes", {"destination_id": dest_id, "source_id": str(uuid.uuid4())}),
        404,
    )
    error_of(api.call("PATCH", f"/v1/routes/{route['id']}", {"bogus": 1}), 400)
    error_of(api.call("PATCH", f"/v1/routes/{uuid.uuid4()}", {"active": True}), 404)
    assert api.call("DELETE", f"/v1/routes/{route['id']}").status_code == 204
    error_of(api.call("DELETE", f"/v1/routes/{route['id']}"), 404)


# -- ingest, events, replay -----------------------------------------------------------------


def test_ingest_routes_by_event_type_and_lists_events(api, sink):
    objs = api.pipeline(sink.url, event_type_pattern="order.*")
    url = objs["source"]["ingest_url"]
    hit = requests.post(url, json={"type": "order.created"}).json()["data"]
    miss = requests.post(url, json={"type": "customer.created"}).json()["data"]
    assert hit["status"] == "queued" and miss["status"] == "accepted"
    wait_for(lambda: len(sink.requests) == 1, what="the matching event at the sink")

    page = api.data("GET", "/v1/events?limit=1")
    assert page["total"] == 2 and len(page["items"]) == 1
    assert page["items"][0]["id"] == miss["id"]  # newest first
    second = api.data("GET", "/v1/events?limit=1&offset=1")
    assert second["items"][0]["id"] == hit["id"]
    by_source = api.data("GET", f"/v1/events?source_id={objs['source']['id']}")
    assert by_source["total"] == 2
    accepted = api.data("GET", "/v1/events?status=accepted")
    assert [e["id"] for e in accepted["items"]] == [miss["id"]]
    assert api.data("GET", "/v1/events?direction=outbound")["total"] == 0
    event = api.data("GET", f"/v1/events/{hit['id']}")["event"]
    assert event["headers"]["content-type"] == "application/json"
    assert event["direction"] == "inbound" and event["event_type"] == "order.created"
    raw = b"\xff\xfe\x00not utf-8"
    binary = requests.post(url, data=raw, headers={"Content-Type": "application/octet-stream"})
    detail = api.data("GET", f"/v1/events/{binary.json()['data']['id']}")
    assert base64.b64decode(detail["body_base64"]) == raw
    assert "\ufffd" in detail["event"]["body"]  # the text form cannot carry these bytes

    for query, fragment in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("status=lost", "status"),
        ("direction=sideways", "direction"),
        ("source_id=zzz", "source_id"),
    ]:
        assert fragment in error_of(api.call("GET", f"/v1/events?{query}"), 400), query
    error_of(api.call("GET", f"/v1/events/{uuid.uuid4()}"), 404)


def test_ingest_limits_and_unknown_token(api_daemon, api, sink):
    objs = api.pipeline(sink.url)
    big = b"x" * (1024 * 1024 + 1)
    resp = requests.post(objs["source"]["ingest_url"], data=big)
    assert "MAX_INGEST_BYTES" in error_of(resp, 413)
    error_of(requests.post(f"{api_daemon.url}/ingest/no-such-token", data=b"{}"), 404)
    assert api.data("GET", "/v1/events")["total"] == 0  # nothing half-written


def test_replay_inbound_event(api, sink):
    objs = api.pipeline(sink.url)
    first = requests.post(objs["source"]["ingest_url"], data=b"replay me").json()["data"]
    wait_for(lambda: len(sink.requests) == 1, what="first delivery")
    replay = api.data("POST", f"/v1/events/{first['id']}/replay", None, 202)
    assert replay["original_event_id"] == first["id"]
    assert replay["replay_event_id"] != first["id"] and replay["status"] == "queued"
    wait_for(lambda: len(sink.requests) == 2, what="the replay at the sink")
    assert sink.requests[1]["body"] == b"replay me"
    original = api.data("GET", f"/v1/events/{first['id']}")["event"]
    assert original["status"] == "replayed"
    copy = api.data("GET", f"/v1/events/{replay['replay_event_id']}")["event"]
    assert copy["replay_of"] == first["id"] and copy["body"] == "replay me"
    error_of(api.call("POST", f"/v1/events/{uuid.uuid4()}/replay"), 404)
    error_of(api.call("POST", "/v1/events/xyz/replay"), 400)


def test_outbound_publish_fanout_idempotency_and_replay(api, sink):
    dest = api.data("POST", "/v1/destinations", {"name": "a", "url": sink.url + "/a"}, 201)
    other = api.data("POST", "/v1/destinations", {"name": "b", "url": sink.url + "/b"}, 201)
    api.data(
        "POST", "/v1/routes", {"destination_id": dest["id"], "event_type_pattern": "order.*"}, 201
    )
    api.data("POST", "/v1/routes", {"destination_id": other["id"]}, 201)

    body = {"event_type": "order.paid", "external_event_id": "ord_1", "payload": '{"id": 1}'}
    published = api.data("POST", "/v1/outbound-events", body, 201)
    assert published["status"] == "queued"
    wait_for(lambda: len(sink.requests) == 2, what="fan-out to both destinations")
    assert sorted(r["path"] for r in sink.requests) == ["/a", "/b"]
    assert all(r["headers"]["Content-Type"] == "application/json" for r in sink.requests)
    assert all(r["body"] == b'{"id": 1}' for r in sink.requests)

    again = api.data("POST", "/v1/outbound-events", body, 201)
    assert again["id"] == published["id"]
    only_b = api.data(
        "POST", "/v1/outbound-events", {"event_type": "user.new", "payload": "plain text"}, 201
    )
    wait_for(lambda: len(sink.requests) == 3, what="pattern-filtered event")
    assert sink.requests[2]["path"] == "/b"
    assert sink.requests[2]["headers"]["Content-Type"].startswith("text/plain")

    listed = api.data("GET", "/v1/outbound-events")
    assert listed["total"] == 2 and {e["id"] for e in listed["items"]} == {
        published["id"],
        only_b["id"],
    }
    assert all(e["direction"] == "outbound" for e in listed["items"])
    detail = wait_for(
        lambda: (
            (d := api.data("GET", f"/v1/outbound-events/{published['id']}"))["event"]["status"]
            == "delivered"
            and d
        ),
        what="delivered outbound event",
    )
    assert len(detail["attempts"]) == 2
    replay = api.data("POST", f"/v1/outbound-events/{published['id']}/replay", None, 202)
    wait_for(lambda: len(sink.requests) == 5, what="outbound replay fan-out")
    assert replay["original_event_id"] == published["id"]

    for bad, fragment in [
        ({}, "payload is required"),
        ({"payload": {"id": 1}}, "payload must be a string"),
        ({"payload": "x", "event_type": 7}, "event_type"),
    ]:
        assert fragment in error_of(api.call("POST", "/v1/outbound-events", bad), 400)
    inbound = api.pipeline(sink.url)
    ev = requests.post(inbound["source"]["ingest_url"], data=b"in").json()["data"]
    error_of(api.call("GET", f"/v1/outbound-events/{ev['id']}"), 404)  # not outbound
    error_of(api.call("POST", f"/v1/outbound-events/{ev['id']}/replay"), 404)


# -- stats and settings ----------------------------------------------------------------------


def test_stats(api, api_daemon, sink):
    objs = api.pipeline(sink.url)
    for i in range(3):
        requests.post(objs["source"]["ingest_url"], data=f"{i}".encode())
    wait_for(
        lambda: api.data("GET", "/v1/events?status=delivered")["total"] == 3, what="3 delivered"
    )
    stats = api.data("GET", "/v1/stats")
    assert {"status": "delivered", "count": 3} in stats["by_status"]
    assert len(stats["daily"]) == 30
    today = stats["daily"][-1]
    assert today["inbound"] == 3 and today["delivered"] == 3 and today["outbound"] == 0
    platform = Api(api_daemon.url).data("GET", "/v1/platform-stats")
    assert platform["events_processed"] >= 3 and platform["events_delivered"] >= 3
    assert platform["delivery_attempts"] >= 3 and 0 < platform["success_rate_pct"] <= 100


def test_brand_settings_and_custom_domains(api):
    empty = api.data("GET", "/v1/brand-settings")
    assert empty["company_name"] is None and empty["id"]
    changed = api.data(
        "POST",
        "/v1/brand-settings",
        {"company_name": "Acme", "primary_color": "#4F46E5", "support_email": "help@acme.io"},
    )
    assert changed["company_name"] == "Acme" and changed["id"] == empty["id"]
    kept = api.data("POST", "/v1/brand-settings", {"docs_title": "Acme hooks"})
    assert kept["company_name"] == "Acme" and kept["docs_title"] == "Acme hooks"
    for bad, fragment in [
        ({"primary_color": "blue"}, "primary_color"),
        ({"primary_color": "#000000\n"}, "primary_color"),
        ({"logo_url": "javascript:alert(1)"}, "logo_url"),
        ({"support_email": "nope"}, "support_email"),
        ({"colour": "#000000"}, "colour"),
    ]:
        assert fragment in error_of(api.call("POST", "/v1/brand-settings", bad), 400)

    domain = f"hooks-{uuid.uuid4().hex[:6]}.example.com"
    created = api.data("POST", "/v1/custom-domains", {"domain": domain}, 201)
    assert created["type"] == "ingest" and created["status"] == "pending_verification"
    assert created["verification_token"]
    assert [d["domain"] for d in api.data("GET", "/v1/custom-domains")] == [domain]
    error_of(api.call("POST", "/v1/custom-domains", {"domain": domain}), 409)
    error_of(api.call("POST", "/v1/custom-domains", {"domain": "not a domain"}), 400)
    error_of(api.call("POST", "/v1/custom-domains", {"domain": "x.io", "type": "mail"}), 400)


# -- cross-cutting ---------------------------------------------------------------------------


def test_unknown_paths_and_methods_answer_json_errors(api):
    error_of(api.call("GET", "/v1/nothing-here"), 404)
    error_of(api.call("PUT", "/v1/sources"), 405)


def test_cors_preflight_and_headers(api_daemon, api):
    pre = requests.options(
        api_daemon.url + "/v1/sources",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()
    got = api.call("GET", "/v1/sources", headers={"Origin": "https://app.example"})
    assert got.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_origin_setting_is_honoured(daemon_factory):
    daemon = daemon_factory(CORS_ORIGIN="https://console.example", WORKER_PROCESSES="1")
    resp = requests.get(daemon.url + "/healthz", headers={"Origin": "https://console.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://console.example"


def test_openapi_and_docs_are_served(api_daemon):
    doc = requests.get(api_daemon.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert "/v1/outbound-events" in doc["paths"]
    page = requests.get(api_daemon.url + "/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "openapi.json" in page.text and "https://" not in page.text.split("<script>")[0]
