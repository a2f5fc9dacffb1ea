"""What the README promises operators and new users, checked against real processes."""

from __future__ import annotations

import json
import subprocess
import uuid

import requests

from helpers import Api, gethookd_command, wait_for


def test_closed_signup_refuses_both_http_routes_but_not_the_cli(daemon_factory, base_env):
    daemon = daemon_factory(SIGNUP="closed")
    body = {"email": "someone@example.com", "password": "correct horse", "name": "X"}
    for path, payload in (("/v1/auth/register", body), ("/v1/accounts", {"name": "X"})):
        resp = requests.post(daemon.url + path, json=payload, timeout=10)
        assert resp.status_code == 403, resp.text
        assert "sign-up is closed" in resp.json()["error"]
        assert "gethookd accounts create" in resp.json()["error"]
    out = subprocess.run(
        [*gethookd_command(), "accounts", "create", "--name", "Ops", "--json"],
        env={**daemon.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    key = json.loads(out.stdout)["api_key"]["key"]
    assert Api(daemon.url, key).call("GET", "/v1/sources").status_code == 200
    doc = requests.get(daemon.url + "/openapi.json", timeout=10).json()
    assert "403" in doc["paths"]["/v1/auth/register"]["post"]["responses"]
    assert "403" in doc["paths"]["/v1/accounts"]["post"]["responses"]


def test_signup_is_open_by_default(api_daemon):
    resp = requests.post(api_daemon.url + "/v1/accounts", json={"name": "Open"}, timeout=10)
    assert resp.status_code == 201


def test_registering_twice_says_how_to_log_in_and_login_works(api_daemon):
    creds = {"email": f"twice-{uuid.uuid4().hex[:8]}@example.com", "password": "correct horse"}
    url = api_daemon.url
    assert requests.post(url + "/v1/auth/register", json=creds, timeout=10).status_code == 201
    again = requests.post(url + "/v1/auth/register", json=creds, timeout=10)
    assert again.status_code == 409
    assert "POST /v1/auth/login" in again.json()["error"]
    login = requests.post(url + "/v1/auth/login", json=creds, timeout=10)
    assert login.status_code == 200
    assert login.json()["data"]["api_key"]["key"].startswith("hk_")


def test_docs_with_a_trailing_slash_leads_to_a_page_whose_link_resolves(api_daemon):
    resp = requests.get(api_daemon.url + "/docs/", timeout=10)
    assert resp.status_code == 200 and "text/html" in resp.headers["Content-Type"]
    assert resp.url == api_daemon.url + "/docs", "redirected to /docs"
    assert 'fetch("openapi.json")' in resp.text
    linked = requests.compat.urljoin(resp.url, "openapi.json")
    assert requests.get(linked, timeout=10).json()["openapi"].startswith("3.1")


def test_a_bad_value_in_the_config_file_names_the_file_and_line(tmp_path, base_env):
    conf = tmp_path / "gethookd.conf"
    conf.write_text("# comment\nHOST=127.0.0.1\nPORT=abc\n")
    env = {**base_env, "GETHOOKD_CONFIG": str(conf), "PORT": ""}
    for command in (["check-config"], ["run"]):
        out = subprocess.run(
            [*gethookd_command(), *command], env=env, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 2
        assert f"{conf}:3: PORT='abc' is invalid: expected a whole number" in out.stderr


def test_log_format_json_makes_every_line_json_gunicorns_included(daemon_factory, sink):
    daemon = daemon_factory(LOG_FORMAT="json", API_WORKERS="2")
    wait_for(lambda: "Booting worker" in daemon.log(), what="gunicorn's boot lines")
    pipe = Api(daemon.url).register().pipeline(sink.url)
    resp = requests.post(pipe["source"]["ingest_url"], data=b"{}", timeout=10)
    event_id = resp.json()["data"]["id"]
    wait_for(lambda: '"outcome": "success"' in daemon.log(), what="the delivery's line")
    lines = [line for line in daemon.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # fails on any plain-text line
    loggers = {r["logger"] for r in records}
    assert "gunicorn.error" in loggers and "gethookd.supervisor" in loggers
    assert any("Booting worker" in r["message"] for r in records)
    # The batched lines of ingest and delivery are JSON too, with their fields.
    stored = [r for r in records if r["message"].startswith(f"event {event_id} received")]
    assert len(stored) == 1 and stored[0]["logger"] == "gethookd.events"
    [delivered] = [r for r in records if r.get("event_id") == event_id]
    assert delivered["message"].endswith(": delivered") and delivered["attempt"] == 1
    assert delivered["level"] == "info" and delivered["logger"] == "gethookd.worker"
