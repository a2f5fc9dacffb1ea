"""The console's session over real HTTP: sign-in, the cookie's flags, cookie auth on /v1 with
CSRF on changes, sign-out and expiry enforced on the server, and the sign-in rate limit
counted in the database across two API processes."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import requests

from helpers import Api, sql_rows

PASSWORD = "correct horse"  # what helpers.Api.register signs up with
COOKIE = "gethookd_session"


def _owner(url: str) -> tuple[Api, str]:
    address = f"console-{uuid.uuid4().hex[:10]}@example.com"
    return Api(url).register(address), address


def _sign_in(url: str, body: dict, **headers: str) -> tuple[requests.Session, requests.Response]:
    browser = requests.Session()
    resp = browser.post(url + "/v1/console/session", json=body, headers=headers, timeout=10)
    return browser, resp


def _signed_in(url: str) -> tuple[Api, requests.Session, dict]:
    owner, address = _owner(url)
    browser, resp = _sign_in(url, {"email": address, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    return owner, browser, resp.json()["data"]


def test_password_sign_in_sets_a_strict_http_only_cookie_that_works_on_v1(api_daemon):
    owner, address = _owner(api_daemon.url)
    browser, resp = _sign_in(api_daemon.url, {"email": address.upper(), "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    session = resp.json()["data"]
    assert set(session) == {"account", "csrf_token", "expires_at"}
    assert session["account"]["name"] == "Acme"
    assert len(session["csrf_token"]) >= 32
    assert resp.headers["Cache-Control"] == "no-store"

    cookie = resp.headers["Set-Cookie"]
    parts = [p.strip() for p in cookie.split(";")]
    assert parts[0].startswith(f"{COOKIE}=") and len(parts[0]) > len(COOKIE) + 40
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"} <= set(parts)
    assert "Secure" not in parts  # plain HTTP, BASE_URL http://

    # No Authorization header: the cookie alone authenticates the account's /v1 reads.
    source = owner.data("POST", "/v1/sources", {"name": "mine"}, status=201)
    listed = browser.get(api_daemon.url + "/v1/sources", timeout=10)
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["data"]] == [source["id"]]
    again = browser.get(api_daemon.url + "/v1/console/session", timeout=10)
    assert again.status_code == 200
    assert again.json()["data"] == session
    assert again.headers["Cache-Control"] == "no-store"

    # Without the cookie (or a key) nothing is answered.
    assert requests.get(api_daemon.url + "/v1/sources", timeout=10).status_code == 401
    assert requests.get(api_daemon.url + "/v1/console/session", timeout=10).status_code == 401


def test_api_key_sign_in_and_a_bearer_key_has_no_console_session(api_daemon):
    owner, _ = _owner(api_daemon.url)
    browser, resp = _sign_in(api_daemon.url, {"api_key": owner.key})
    assert resp.status_code == 201, resp.text
    mine = owner.data("GET", "/v1/api-keys")[0]["account_id"]
    assert resp.json()["data"]["account"]["id"] == mine
    assert browser.get(api_daemon.url + "/v1/destinations", timeout=10).status_code == 200
    # A bearer key authenticates /v1 as before, but is not a console session.
    assert owner.call("GET", "/v1/console/session").status_code == 401
    assert owner.call("DELETE", "/v1/console/session").status_code == 401


def test_secure_flag_behind_https_proxy(api_daemon):
    _, address = _owner(api_daemon.url)
    body = {"email": address, "password": PASSWORD}
    _, resp = _sign_in(api_daemon.url, body, **{"X-Forwarded-Proto": "https"})
    assert resp.status_code == 201
    assert "Secure" in [p.strip() for p in resp.headers["Set-Cookie"].split(";")]


def test_secure_flag_and_ttl_from_settings(daemon_factory):
    daemon = daemon_factory(
        role="api", BASE_URL="https://hooks.example.com", CONSOLE_SESSION_TTL="90s"
    )
    _, address = _owner(daemon.url)
    _, resp = _sign_in(daemon.url, {"email": address, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    parts = [p.strip() for p in resp.headers["Set-Cookie"].split(";")]
    assert "Secure" in parts and "Max-Age=90" in parts


@pytest.mark.parametrize("csrf", [None, "", "0" * 64, "\u00e9" * 64])
def test_changes_with_the_cookie_need_the_csrf_token(api_daemon, sink, csrf):
    owner, browser, session = _signed_in(api_daemon.url)
    dest = owner.data("POST", "/v1/destinations", {"name": "d", "url": sink.url}, status=201)
    headers = {} if csrf is None else {"X-CSRF-Token": csrf}
    url = api_daemon.url

    for method, path, body in [
        ("PATCH", f"/v1/destinations/{dest['id']}", {"active": False}),
        ("POST", "/v1/sources", {"name": "forged"}),
        ("DELETE", f"/v1/destinations/{dest['id']}", None),
        ("POST", "/v1/api-keys", {"name": "forged"}),
        ("DELETE", "/v1/console/session", None),
    ]:
        resp = browser.request(method, url + path, json=body, headers=headers, timeout=10)
        assert resp.status_code == 403, (method, path, resp.text)
        assert set(resp.json()) == {"error"} and "X-CSRF-Token" in resp.json()["error"]

    # Nothing changed, and the session still stands.
    assert owner.data("GET", f"/v1/destinations/{dest['id']}")["active"] is True
    assert owner.data("GET", "/v1/sources") == []
    assert [k["name"] for k in owner.data("GET", "/v1/api-keys")] == ["default"]
    assert browser.get(url + "/v1/console/session", timeout=10).status_code == 200

    # With the session's token the same change goes through.
    good = {"X-CSRF-Token": session["csrf_token"]}
    resp = browser.patch(
        f"{url}/v1/destinations/{dest['id']}", json={"active": False}, headers=good, timeout=10
    )
    assert resp.status_code == 200 and resp.json()["data"]["active"] is False


def test_another_sessions_csrf_token_is_refused(api_daemon):
    _, browser, _ = _signed_in(api_daemon.url)
    _, _, other = _signed_in(api_daemon.url)
    resp = browser.post(
        api_daemon.url + "/v1/sources",
        json={"name": "x"},
        headers={"X-CSRF-Token": other["csrf_token"]},
        timeout=10,
    )
    assert resp.status_code == 403


def test_sign_out_ends_the_session_on_the_server(api_daemon, module_db_url):
    _, browser, session = _signed_in(api_daemon.url)
    token = browser.cookies[COOKIE]
    stolen = {"Cookie": f"{COOKIE}={token}"}  # a copy of the cookie kept elsewhere
    url = api_daemon.url
    assert requests.get(url + "/v1/sources", headers=stolen, timeout=10).status_code == 200

    resp = browser.delete(
        url + "/v1/console/session", headers={"X-CSRF-Token": session["csrf_token"]}, timeout=10
    )
    assert resp.status_code == 204 and not resp.content
    parts = [p.strip() for p in resp.headers["Set-Cookie"].split(";")]
    assert parts[0] == f"{COOKIE}=" and "Max-Age=0" in parts and "HttpOnly" in parts

    digest = hashlib.sha256(token.encode()).hexdigest()
    gone = sql_rows(
        module_db_url, "SELECT 1 FROM console_sessions WHERE token_hash = %s", (digest,)
    )
    assert gone == []
    for path in ("/v1/sources", "/v1/console/session"):
        resp = requests.get(url + path, headers=stolen, timeout=10)
        assert resp.status_code == 401 and set(resp.json()) == {"error"}


def test_expired_session_is_refused(api_daemon, module_db_url):
    _, browser, session = _signed_in(api_daemon.url)
    digest = hashlib.sha256(browser.cookies[COOKIE].encode()).hexdigest()
    [(left,)] = sql_rows(
        module_db_url,
        "SELECT EXTRACT(EPOCH FROM expires_at - now()) FROM console_sessions WHERE token_hash = %s",
        (digest,),
    )
    assert 43200 - 60 < float(left) <= 43200  # CONSOLE_SESSION_TTL's default, 12h
    assert browser.get(api_daemon.url + "/v1/sources", timeout=10).status_code == 200
    sql_rows(
        module_db_url,
        "UPDATE console_sessions SET expires_at = now() - interval '1 second' "
        "WHERE token_hash = %s",
        (digest,),
    )
    for path in ("/v1/sources", "/v1/console/session"):
        resp = browser.get(api_daemon.url + path, timeout=10)
        assert resp.status_code == 401 and "expired" in resp.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b"",
        b'{"email": "a@example.com"}',
        b'{"password": "correct horse"}',
        b'{"email": 5, "password": "correct horse"}',
        b'{"email": "a@example.com", "password": "correct horse", "admin": true}',
        b'{"email": "a@example.com", "password": "x", "api_key": "hk_x"}',
        b'{"api_key": null}',
        b'{"api_key": ""}',
    ],
)
def test_malformed_sign_in_is_a_400(api_daemon, body):
    resp = requests.post(
        api_daemon.url + "/v1/console/session",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 400, resp.text
    assert set(resp.json()) == {"error"}
    assert "Set-Cookie" not in resp.headers


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_sign_in_takes_only_json_so_a_cross_site_form_cannot_sign_in(api_daemon, content_type):
    _, address = _owner(api_daemon.url)
    body = f'{{"email": "{address}", "password": "{PASSWORD}"}}'.encode()
    headers = {"Content-Type": content_type} if content_type else {}
    resp = requests.post(
        api_daemon.url + "/v1/console/session", data=body, headers=headers, timeout=10
    )
    assert resp.status_code == 415, resp.text
    assert set(resp.json()) == {"error"} and "Set-Cookie" not in resp.headers
    ok = requests.post(
        api_daemon.url + "/v1/console/session",
        data=body,
        headers={"Content-Type": "application/json; charset=utf-8"},
        timeout=10,
    )
    assert ok.status_code == 201


def test_wrong_credentials_are_a_401_without_a_cookie(api_daemon):
    _, address = _owner(api_daemon.url)
    for body in (
        {"email": address, "password": "wrong horse"},
        {"email": "nobody@example.com", "password": PASSWORD},
        {"api_key": "hk_" + "x" * 43},
    ):
        _, resp = _sign_in(api_daemon.url, body)
        assert resp.status_code == 401 and set(resp.json()) == {"error"}
        assert "Set-Cookie" not in resp.headers


def test_cookie_and_csrf_token_never_reach_the_log(api_daemon):
    _, browser, session = _signed_in(api_daemon.url)
    token = browser.cookies[COOKIE]
    headers = {"X-CSRF-Token": session["csrf_token"]}
    url = api_daemon.url
    assert browser.post(url + "/v1/sources", json={"name": 5}, headers=headers).status_code == 400
    assert browser.post(url + "/v1/sources", json={"name": "x"}).status_code == 403
    assert browser.delete(url + "/v1/console/session", headers=headers).status_code == 204
    assert requests.get(url + "/v1/sources", cookies={COOKIE: token}).status_code == 401
    log = api_daemon.log()
    assert token not in log and session["csrf_token"] not in log


def test_sign_in_rate_limit_holds_across_two_api_processes(daemon_factory, db_url):
    one = daemon_factory(role="api")
    two = daemon_factory(role="api")
    _, victim = _owner(one.url)
    _, bystander = _owner(one.url)

    # Per email: failures recorded from elsewhere count against this email from here.
    sql_rows(
        db_url,
        "INSERT INTO console_signin_failures (email, address) "
        "SELECT %s, '203.0.113.9' FROM generate_series(1, 10)",
        (victim,),
    )
    _, resp = _sign_in(two.url, {"email": victim, "password": PASSWORD})
    assert resp.status_code == 429, resp.text
    assert 1 <= int(resp.headers["Retry-After"]) <= 900
    assert set(resp.json()) == {"error"} and "Set-Cookie" not in resp.headers
    _, resp = _sign_in(one.url, {"email": bystander, "password": PASSWORD})
    assert resp.status_code == 201  # another email from this address is unaffected

    # Per address: ten failures spread over both processes, each for another email.
    for n in range(10):
        server = (one, two)[n % 2]
        body = {"email": f"guess-{n}@example.com", "password": "wrong horse"}
        _, resp = _sign_in(server.url, body)
        assert resp.status_code == 401, (n, resp.text)
    for server in (one, two):
        _, resp = _sign_in(server.url, {"email": bystander, "password": PASSWORD})
        assert resp.status_code == 429
        assert int(resp.headers["Retry-After"]) >= 1
        _, resp = _sign_in(server.url, {"api_key": "hk_" + "y" * 43})
        assert resp.status_code == 429

    # Once the failures leave the 15-minute window, sign-in works again.
    sql_rows(db_url, "UPDATE console_signin_failures SET failed_at = now() - interval '16 minutes'")
    _, resp = _sign_in(two.url, {"email": victim, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
