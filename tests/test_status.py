"""`gethookd status` against real daemons and databases: processes, queue, stuck exit code."""

from __future__ import annotations

import json
import subprocess

import psycopg2
import requests
from test_embedded import data_dir, embedded_daemon  # noqa: F401 - a fixture, reused

from helpers import Api, gethookd_command, wait_for


def status(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*gethookd_command(), "status", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_reports_processes_queue_paused_destinations_and_a_stuck_queue(
    daemon_factory, sink, db_url
):
    # API only: nothing delivers, so what is ingested stays due and grows old.
    daemon = daemon_factory(role="api")
    api = Api(daemon.url).register()
    objs = api.pipeline(sink.url)
    for _ in range(3):
        resp = requests.post(objs["source"]["ingest_url"], data=b"{}", timeout=10)
        assert resp.status_code == 202
    paused = api.pipeline(sink.url)
    api.data("PATCH", f"/v1/destinations/{paused['destination']['id']}", {"active": False})
    requests.post(paused["source"]["ingest_url"], data=b"{}", timeout=10)
    # A paused destination's deliveries are 'held' (migration 0003); set here directly so
    # this test does not depend on which code path holds them.
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE deliveries SET status = 'held' WHERE destination_id = %s",
            (paused["destination"]["id"],),
        )
    conn.close()

    def stuck() -> dict | None:
        out = status(daemon.env, "--json", "--stuck-after", "300ms")
        return json.loads(out.stdout) if out.returncode == 4 else None

    report = wait_for(stuck, what="status to call the queue stuck (exit 4)")
    assert report["queue"] == {
        "due": 3,
        "scheduled": 0,
        "in_flight": 0,
        "held": 1,
        "lease_expired": 0,
    }
    assert report["oldest_due_seconds"] > 0.3 and report["stuck"] is True
    assert report["dead_letters_24h"] == 0
    [unhealthy] = report["unhealthy_destinations"]
    assert unhealthy["id"] == paused["destination"]["id"]
    assert unhealthy["state"] == "paused" and unhealthy["waiting"] == 1
    [master] = [p for p in report["processes"] if p["pid"] == daemon.proc.pid]
    assert master["title"] == "gethookd: master (api)"
    [api_proc] = master["children"]
    assert api_proc["title"] == "gunicorn: master [gethookd-api]"
    assert {c["title"] for c in api_proc["children"]} == {"gunicorn: worker [gethookd-api]"}

    relaxed = status(daemon.env, "--stuck-after", "1h")
    assert relaxed.returncode == 0, relaxed.stderr
    assert "queue: 3 due, 0 scheduled, 0 in flight" in relaxed.stdout
    assert "1 held" in relaxed.stdout
    assert f"{daemon.proc.pid}  gethookd: master (api)" in relaxed.stdout
    assert "stuck: no" in relaxed.stdout

    bad = status(daemon.env, "--stuck-after", "soon")
    assert bad.returncode == 2 and "--stuck-after" in bad.stderr


def test_status_beside_a_running_gateway_on_the_embedded_database(data_dir, tmp_path):  # noqa: F811
    daemon = embedded_daemon(data_dir, tmp_path / "gateway.log")
    try:
        daemon.start()
        out = status(daemon.env, "--json")
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["queue"]["due"] == 0
        assert any(p["pid"] == daemon.proc.pid for p in report["processes"])
        # The gateway and its database are untouched.
        assert requests.get(daemon.url + "/readyz", timeout=5).status_code == 200
    finally:
        daemon.kill()
