"""The event lists' filters and keyset paging, over HTTP against a real `gethookd run`."""

from __future__ import annotations

import uuid

import psycopg2
import requests

from gethookd.api import openapi
from helpers import Api, wait_for


def error_of(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    body = resp.json()
    assert set(body) == {"error"} and body["error"]
    return body["error"]


def _ids(page: dict) -> list[str]:
    return [e["id"] for e in page["items"]]


def _account_id(api: Api) -> str:
    return api.data("GET", "/v1/api-keys")[0]["account_id"]


def test_filters_by_destination_event_type_and_time(api, sink):
    objs = api.pipeline(sink.url, event_type_pattern="order.*")
    source, first_dest = objs["source"], objs["destination"]
    second_dest = api.data(
        "POST", "/v1/destinations", {"name": "all", "url": sink.url + "/all"}, status=201
    )
    api.data(
        "POST",
        "/v1/routes",
        {"source_id": source["id"], "destination_id": second_dest["id"]},
        status=201,
    )
    sent = []
    for kind in ("order.created", "customer.created", "order.paid", "order.created"):
        sent.append(requests.post(source["ingest_url"], json={"type": kind}).json()["data"]["id"])
    wait_for(lambda: len(sink.requests) == 7, what="3 + 4 deliveries")
    newest_first = list(reversed(sent))
    assert _ids(api.data("GET", "/v1/events")) == newest_first

    only_first = api.data("GET", f"/v1/events?destination_id={first_dest['id']}")
    assert _ids(only_first) == [sent[3], sent[2], sent[0]] and only_first["total"] == 3
    only_second = api.data("GET", f"/v1/events?destination_id={second_dest['id']}")
    assert only_second["total"] == 4
    typed = api.data("GET", "/v1/events?event_type=order.created")
    assert _ids(typed) == [sent[3], sent[0]] and typed["total"] == 2
    combined = api.data(
        "GET", f"/v1/events?event_type=customer.created&destination_id={first_dest['id']}"
    )
    assert combined == {"items": [], "total": 0, "next_cursor": None}

    # since is inclusive, until exclusive, on created_at (as the list shows it).
    created = {e["id"]: e["created_at"] for e in api.data("GET", "/v1/events")["items"]}
    params = {"since": created[sent[1]], "until": created[sent[3]]}
    window = api.data("GET", "/v1/events?" + requests.compat.urlencode(params))
    assert _ids(window) == [sent[2], sent[1]]
    # The same instant with an explicit offset (its + encoded) and with the + left raw.
    plus = created[sent[1]].replace("Z", "+00:00")
    assert _ids(api.data("GET", "/v1/events?since=" + plus.replace("+", "%2B")))[-1] == sent[1]
    assert _ids(api.data("GET", "/v1/events?since=" + plus))[-1] == sent[1]

    unfiltered = api.data("GET", "/v1/events?limit=2&include_total=false")
    assert unfiltered["total"] is None and _ids(unfiltered) == newest_first[:2]
    assert unfiltered["next_cursor"]
    rest = api.data("GET", f"/v1/events?limit=2&cursor={unfiltered['next_cursor']}")
    assert _ids(rest) == newest_first[2:] and rest["total"] == 4
    assert rest["next_cursor"] is None  # exactly the last page


def test_keyset_paging_visits_every_event_once_across_equal_timestamps(api, module_db_url):
    """2,000 events in 20 instants (ties broken by id): cursor pages see each exactly once,
    in the order offset paging gives, and another account's events never appear."""
    account = _account_id(api)
    other = Api(api.base).register(f"other-{uuid.uuid4().hex[:8]}@example.com")
    conn = psycopg2.connect(module_db_url)
    with conn, conn.cursor() as cur:
        for owner in (account, _account_id(other)):
            cur.execute(
                "INSERT INTO events (account_id, direction, event_type, body, status, created_at)"
                " SELECT %s, 'outbound', 'bulk.' || (g %% 3), 'x', 'delivered',"
                "        timestamptz '2026-01-01T00:00:00Z' + (g %% 20) * interval '1 minute'"
                " FROM generate_series(1, 2000) AS g",
                (owner,),
            )
    conn.close()
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "limit=200&include_total=false" + (f"&cursor={cursor}" if cursor else "")
        page = api.data("GET", f"/v1/events?{query}")
        assert page["total"] is None
        seen += _ids(page)
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 10 and len(seen) == len(set(seen)) == 2000
    by_offset = []
    for offset in range(0, 2000, 200):
        by_offset += _ids(api.data("GET", f"/v1/events?limit=200&offset={offset}"))
    assert seen == by_offset
    assert not set(seen) & set(_ids(other.data("GET", "/v1/events?limit=200")))

    # Filters and the cursor together, on the outbound list too.
    typed: list[str] = []
    cursor = None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        page = api.data("GET", f"/v1/outbound-events?event_type=bulk.1&limit=100{suffix}")
        assert page["total"] == 666 + 1  # g % 3 == 1 for g in 1..2000
        typed += _ids(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(set(typed)) == 667
    window = api.data(
        "GET",
        "/v1/events?since=2026-01-01T00:05:00Z&until=2026-01-01T00:07:00%2B00:00&limit=1",
    )
    assert window["total"] == 200  # minutes 5 and 6, 100 events each


def test_bad_filters_and_cursors_are_400s_naming_the_parameter(api):
    cursor = api.data("GET", "/v1/events?limit=1")["next_cursor"]
    assert cursor is None  # a new account has no events
    for query, fragment in [
        ("since=yesterday", "since"),
        ("until=2026-01-01", "until"),
        ("since=2026-01-01T00:00:00", "since"),  # no offset: not RFC 3339
        ("since=2026-13-01T00:00:00Z", "since"),
        ("until=0001-01-01T00:00:00%2B01:00", "until"),
        ("destination_id=zzz", "destination_id"),
        ("event_type=", "event_type"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=1_00", "cursor"),
        ("cursor=", "cursor"),
        ("include_total=maybe", "include_total"),
        ("since=2026-01-01T00:00:00Z&since=2026-01-02T00:00:00Z", "since"),
        ("dest_id=x", "dest_id"),
    ]:
        assert fragment in error_of(api.call("GET", f"/v1/events?{query}"), 400), query
    error_of(api.call("GET", "/v1/outbound-events?direction=inbound"), 400)
    error_of(api.call("GET", "/v1/outbound-events?until=junk"), 400)
    # An empty window is no error, and a cursor of the right shape is a position.
    empty = "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z"
    assert api.data("GET", f"/v1/events?{empty}")["total"] == 0
    assert api.data("GET", "/v1/events?since=0443-08-04T17:03:29.17%2B20:30")["total"] == 0
    assert api.data("GET", f"/v1/events?cursor=0_{uuid.uuid4().hex}")["items"] == []


def test_every_filter_query_carries_the_shared_filter():
    from gethookd.db import QUERIES

    shared = QUERIES["event_filter_where"]
    for name in ("filter_page", "filter_count", "filter_batch"):
        assert shared in QUERIES[name] and "-- include:" not in QUERIES[name], name


def test_every_list_parameter_is_documented():
    from gethookd.api.resources import Events, OutboundEvents

    for path, resource in (("/v1/events", Events), ("/v1/outbound-events", OutboundEvents)):
        documented = {p["name"] for p in openapi.PATHS[path]["get"]["parameters"]}
        assert documented == set(resource.query_params), path
