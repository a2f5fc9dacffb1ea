"""Tenant isolation: a second account's key walks every endpoint and sees nothing of the first."""

from __future__ import annotations

import uuid

import pytest
import requests

from gethookd.api.app import ROUTES
from helpers import Api, wait_for


def _status(resp: requests.Response) -> int:
    body = resp.json() if resp.content else None
    if resp.status_code >= 400:
        assert set(body) == {"error"}, body
    return resp.status_code


class CookieApi(Api):
    """The same client signed in to the console: its session cookie and CSRF token, no key."""

    def __init__(self, base_url: str, email: str) -> None:
        super().__init__(base_url)
        self.browser = requests.Session()
        resp = self.browser.post(
            base_url + "/v1/console/session",
            json={"email": email, "password": "correct horse"},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
        self.browser.headers["X-CSRF-Token"] = resp.json()["data"]["csrf_token"]

    def call(self, method: str, path: str, json=None, **kwargs) -> requests.Response:
        return self.browser.request(method, self.base + path, json=json, timeout=10, **kwargs)


@pytest.mark.parametrize("intruder_auth", ["api_key", "session_cookie"])
def test_second_account_sees_none_of_the_first(api_daemon, sink, intruder_auth):
    owner = Api(api_daemon.url).register(f"owner-{uuid.uuid4().hex[:8]}@example.com")
    address = f"intruder-{uuid.uuid4().hex[:8]}@example.com"
    intruder = Api(api_daemon.url).register(address)
    if intruder_auth == "session_cookie":
        intruder = CookieApi(api_daemon.url, address)

    objs = owner.pipeline(sink.url)
    src, dest, route = objs["source"], objs["destination"], objs["route"]
    inbound = requests.post(src["ingest_url"], data=b"secret payload").json()["data"]
    outbound = owner.data("POST", "/v1/outbound-events", {"payload": "also secret"}, 201)
    key = owner.data("POST", "/v1/api-keys", {"name": "owner-extra"}, 201)
    owner.data("POST", "/v1/brand-settings", {"company_name": "Owner Corp"})
    owner.data(
        "POST", "/v1/custom-domains", {"domain": f"o{uuid.uuid4().hex[:6]}.example.com"}, 201
    )
    wait_for(lambda: sink.requests, what="the owner's delivery")

    ids = {
        "key_id": key["id"],
        "source_id": src["id"],
        "dest_id": dest["id"],
        "route_id": route["id"],
        "event_id": inbound["id"],
    }
    walked: set[tuple[str, str]] = set()

    def probe(method: str, template: str, body: dict | None = None, **overrides: str) -> int:
        walked.add((method, template))
        path = template.format(**{**ids, **overrides})
        return _status(intruder.call(method, path, body))

    # Every object-addressed endpoint answers 404 for the owner's ids.
    assert probe("DELETE", "/v1/api-keys/{key_id}") == 404
    assert probe("GET", "/v1/sources/{source_id}") == 404
    assert probe("DELETE", "/v1/sources/{source_id}") == 404
    assert probe("GET", "/v1/destinations/{dest_id}") == 404
    assert probe("PATCH", "/v1/destinations/{dest_id}", {"active": False}) == 404
    assert probe("DELETE", "/v1/destinations/{dest_id}") == 404
    assert probe("POST", "/v1/destinations/{dest_id}/rotate-secret") == 404
    assert probe("PATCH", "/v1/routes/{route_id}", {"active": False}) == 404
    assert probe("DELETE", "/v1/routes/{route_id}") == 404
    assert probe("GET", "/v1/events/{event_id}") == 404
    assert probe("POST", "/v1/events/{event_id}/replay") == 404
    assert probe("GET", "/v1/outbound-events/{event_id}", event_id=outbound["id"]) == 404
    assert probe("POST", "/v1/outbound-events/{event_id}/replay", event_id=outbound["id"]) == 404
    # Bulk replay: the owner's job is not the intruder's; the intruder's filters on the
    # owner's ids match nothing (and the owner's event is not replayed, checked below).
    job = owner.data("POST", "/v1/events/replay", {"event_type": "no.such.type"}, 202)
    assert probe("GET", "/v1/event-replays/{job_id}", job_id=job["id"]) == 404
    assert probe("DELETE", "/v1/event-replays/{job_id}", job_id=job["id"]) == 404
    assert probe("POST", "/v1/events/replay", {"source_id": src["id"]}) == 202
    dry = {"destination_id": dest["id"], "dry_run": True}
    assert intruder.data("POST", "/v1/events/replay", dry)["matched"] == 0
    # Creating a route onto the owner's destination or source is refused the same way.
    assert probe("POST", "/v1/routes", {"destination_id": dest["id"]}) == 404
    mine = intruder.data("POST", "/v1/destinations", {"name": "m", "url": sink.url}, 201)
    assert (
        probe("POST", "/v1/routes", {"destination_id": mine["id"], "source_id": src["id"]}) == 404
    )

    # Lists and filters show only the intruder's own objects.
    def listed(path: str) -> object:
        walked.add(("GET", path.split("?")[0]))
        return intruder.data("GET", path)

    assert key["id"] not in str(listed("/v1/api-keys"))
    assert listed("/v1/sources") == []
    assert [d["id"] for d in listed("/v1/destinations")] == [mine["id"]]
    assert listed("/v1/routes") == []
    empty = {"items": [], "total": 0, "next_cursor": None}
    assert listed("/v1/events") == empty
    assert listed(f"/v1/events?source_id={src['id']}") == empty
    assert listed("/v1/outbound-events") == empty
    assert all(row["count"] == 0 for row in listed("/v1/stats")["by_status"])
    assert listed("/v1/brand-settings")["company_name"] is None
    assert listed("/v1/custom-domains") == []
    assert [d["destination_id"] for d in listed("/v1/destination-stats")] == [mine["id"]]
    assert listed("/v1/source-stats") == []
    text = intruder.call("GET", "/v1/events").text + intruder.call("GET", "/v1/sources").text
    assert "secret payload" not in text and src["path_token"] not in text

    # The console session is the intruder's own (an API key has none).
    walked.add(("GET", "/v1/console/session"))
    session = intruder.call("GET", "/v1/console/session")
    if intruder_auth == "session_cookie":
        assert session.json()["data"]["account"]["id"] == mine["account_id"]
    else:
        assert _status(session) == 401

    # Nothing of the owner's was changed by the attempts.
    assert owner.data("GET", f"/v1/destinations/{dest['id']}")["active"] is True
    assert owner.data("GET", f"/v1/sources/{src['id']}")["id"] == src["id"]
    assert route["id"] in [r["id"] for r in owner.data("GET", "/v1/routes")]
    Api(api_daemon.url, key["key"]).data("GET", "/v1/sources")  # key not revoked
    assert owner.data("GET", f"/v1/events/{inbound['id']}")["event"]["status"] != "replayed"

    # The walk covered every authenticated route of the app.
    authed = {path for path, resource in ROUTES.items() if getattr(resource, "auth", True)}
    covered = {template for _, template in walked}
    presets = {"/v1/provider-presets", "/v1/destination-presets"}  # the same for everyone
    assert authed - covered - presets == set()
