"""The console's per-destination and per-source figures, on a small dataset made by real
deliveries through a real daemon, and the windows they cover."""

from __future__ import annotations

import pytest
import requests

from helpers import Sink, sql_rows, wait_for


def _percentile_disc(values: list[int], fraction: float) -> int:
    """PostgreSQL's percentile_disc: the first value whose cumulative share reaches fraction."""
    ordered = sorted(values)
    for index, value in enumerate(ordered, start=1):
        if index / len(ordered) >= fraction:
            return value
    return ordered[-1]


@pytest.fixture
def flaky_sink():
    server = Sink(lambda n, path, body: (500, 0.0) if n == 1 else (200, 0.0))
    yield server
    server.close()


def test_destination_and_source_figures(api, flaky_sink, module_db_url):
    objs = api.pipeline(flaky_sink.url, retry_policy={"max_attempts": 3, "backoff": "fixed"})
    src, dest = objs["source"], objs["destination"]
    idle_dest = api.data("POST", "/v1/destinations", {"name": "idle", "url": flaky_sink.url}, 201)
    idle_src = api.data("POST", "/v1/sources", {"name": "quiet"}, 201)

    ids = [
        requests.post(src["ingest_url"], data=f'{{"n": {n}}}').json()["data"]["id"]
        for n in range(3)
    ]

    def delivered() -> list[dict] | None:
        found = [api.data("GET", f"/v1/events/{i}") for i in ids]
        if all(f["event"]["status"] == "delivered" for f in found):
            return found
        return None

    events = wait_for(delivered, 20, "the three events to be delivered")
    attempts = [a for e in events for a in e["attempts"]]
    assert len(attempts) == 4  # the first delivery failed once (500), then succeeded
    latencies = [a["latency_ms"] for a in attempts]

    stats = {row["destination_id"]: row for row in api.data("GET", "/v1/destination-stats")}
    assert set(stats) == {dest["id"], idle_dest["id"]}
    busy = stats[dest["id"]]
    assert busy["attempts"] == 4 and busy["succeeded"] == 3 and busy["failed"] == 1
    assert busy["success_rate_pct"] == 75.0
    assert busy["latency_p50_ms"] == _percentile_disc(latencies, 0.5)
    assert busy["latency_p95_ms"] == _percentile_disc(latencies, 0.95)
    failed = next(a for a in attempts if a["outcome"] != "success")
    assert busy["last_error"]["status_code"] == 500
    assert busy["last_error"]["message"] == failed["error_message"]
    assert busy["last_error"]["at"]
    assert stats[idle_dest["id"]] == {
        "destination_id": idle_dest["id"],
        "attempts": 0,
        "succeeded": 0,
        "failed": 0,
        "success_rate_pct": None,
        "latency_p50_ms": None,
        "latency_p95_ms": None,
        "last_error": None,
    }

    # A replay is a new event of the same source, and counted as one.
    replay = api.data("POST", f"/v1/events/{ids[0]}/replay", status=202)["replay_event_id"]
    wait_for(
        lambda: api.data("GET", f"/v1/events/{replay}")["event"]["status"] == "delivered",
        20,
        "the replay to be delivered",
    )
    assert api.data("GET", "/v1/source-stats") == [
        {"source_id": src["id"], "events": 4},
        {"source_id": idle_src["id"], "events": 0},
    ]
    assert api.data("GET", "/v1/destination-stats")[0]["attempts"] == 5

    # Older than the window: not counted in it, counted in a wider one.
    sql_rows(
        module_db_url,
        "UPDATE delivery_attempts SET started_at = started_at - interval '25 hours', "
        "finished_at = finished_at - interval '25 hours' WHERE event_id = ANY(%s::uuid[])",
        (ids,),
    )
    sql_rows(
        module_db_url,
        "UPDATE events SET created_at = created_at - interval '25 hours' "
        "WHERE id = ANY(%s::uuid[])",
        (ids[1:],),
    )
    day = api.data("GET", "/v1/destination-stats?hours=24")[0]
    assert (day["attempts"], day["succeeded"], day["failed"]) == (1, 1, 0)  # the replay's
    assert day["success_rate_pct"] == 100.0 and day["last_error"] is None
    two_days = api.data("GET", "/v1/destination-stats?hours=48")[0]
    assert (two_days["attempts"], two_days["failed"]) == (5, 1)
    assert two_days["last_error"]["status_code"] == 500
    sources = {r["source_id"]: r["events"] for r in api.data("GET", "/v1/source-stats?hours=24")}
    assert sources[src["id"]] == 2  # ids[0] and its replay
    sources = {r["source_id"]: r["events"] for r in api.data("GET", "/v1/source-stats?hours=48")}
    assert sources[src["id"]] == 4


@pytest.mark.parametrize("path", ["/v1/destination-stats", "/v1/source-stats"])
@pytest.mark.parametrize("query", ["?hours=0", "?hours=721", "?hours=abc", "?hours=", "?days=1"])
def test_bad_window_is_a_400(api, path, query):
    resp = api.call("GET", path + query)
    assert resp.status_code == 400, resp.text
    assert set(resp.json()) == {"error"}


def test_figures_need_authentication(api_daemon):
    for path in ("/v1/destination-stats", "/v1/source-stats"):
        assert requests.get(api_daemon.url + path, timeout=10).status_code == 401
