"""Bulk replay over HTTP and from the CLI, against a real `gethookd run` and PostgreSQL.

Volumes are made by SQL (dead-lettered events with their dead deliveries); every replay is
checked in the database: one replay per original, linked by replay_of, nothing of another
account touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import psycopg2
import requests

from helpers import Api, Sink, gethookd_command, sql_rows, wait_for


def error_of(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    body = resp.json()
    assert set(body) == {"error"} and body["error"]
    return body["error"]


def _account_id(api: Api) -> str:
    return api.data("GET", "/v1/api-keys")[0]["account_id"]


def _dead_letters(
    db_url: str, account: str, source: str, dest: str, n: int, event_type: str, age: str = "1 hour"
) -> None:
    """n inbound events that exhausted their one attempt at dest, oldest first."""
    sql_rows(
        db_url,
        """
        WITH ev AS (
            INSERT INTO events (account_id, direction, source_id, event_type, body, status,
                                final_state, attempts_count, content_type, created_at)
            SELECT %(account)s, 'inbound', %(source)s, %(type)s,
                   convert_to('body ' || g, 'UTF8'), 'dead_letter', 'dead_letter', 1,
                   'text/plain', now() - %(age)s::interval + g * interval '1 millisecond'
            FROM generate_series(1, %(n)s) AS g
            RETURNING id
        )
        INSERT INTO deliveries (event_id, destination_id, account_id, status, attempt_count,
                                max_attempts)
        SELECT id, %(dest)s, %(account)s, 'dead', 1, 1 FROM ev
        """,
        {
            "account": account,
            "source": source,
            "dest": dest,
            "n": n,
            "type": event_type,
            "age": age,
        },
    )


def _replay_counts(db_url: str, account: str) -> dict[str, int]:
    """original id -> how many replays of it exist."""
    rows = sql_rows(
        db_url,
        "SELECT replay_of, count(*) FROM events WHERE account_id = %s AND replay_of IS NOT NULL"
        " GROUP BY replay_of",
        (account,),
    )
    return {str(original): n for original, n in rows}


def _finished(api: Api, job_id: str, timeout: float = 60.0) -> dict:
    def done() -> dict | None:
        job = api.data("GET", f"/v1/event-replays/{job_id}")
        return job if job["state"] not in ("pending", "running") else None

    return wait_for(done, timeout, f"replay job {job_id} to finish")


def test_dry_run_counts_and_bad_requests_are_refused(api, sink, module_db_url):
    objs = api.pipeline(sink.url)
    account, source, dest = _account_id(api), objs["source"]["id"], objs["destination"]["id"]
    _dead_letters(module_db_url, account, source, dest, 50, "order.failed")
    sql_rows(
        module_db_url,
        "INSERT INTO events (account_id, direction, source_id, event_type, body, status)"
        " SELECT %s, 'inbound', %s, 'order.ok', 'x', 'delivered' FROM generate_series(1, 30)",
        (account, source),
    )

    def dry(**body) -> int:
        answer = api.data("POST", "/v1/events/replay", {**body, "dry_run": True}, 200)
        assert answer["dry_run"] is True
        return answer["matched"]

    assert dry() == 80
    assert dry(status="dead_letter") == 50
    assert dry(event_type="order.ok", source_id=source) == 30
    assert dry(destination_id=dest) == 50  # only the dead letters have deliveries
    assert dry(until="2000-01-01T00:00:00Z") == 0
    assert dry(status="dead_letter", to_destination_id=dest) == 50

    for body, status, fragment in [
        ({"since": "last tuesday"}, 400, "since"),
        ({"until": "2026-01-01"}, 400, "until"),
        ({"status": "lost"}, 400, "status"),
        ({"source_id": 12}, 400, "source_id"),
        ({"destination_id": "zzz"}, 400, "destination_id"),
        ({"dry_run": "yes"}, 400, "dry_run"),
        ({"rate": 0}, 400, "rate"),
        ({"statuss": "dead_letter"}, 400, "statuss"),
        ({"to_destination_id": str(uuid.uuid4())}, 404, "destination"),
        ({"to_destination_id": str(uuid.uuid4()), "dry_run": True}, 404, "destination"),
    ]:
        assert fragment in error_of(api.call("POST", "/v1/events/replay", body), status), body
    error_of(api.call("POST", "/v1/events/replay", None, data=b"[1]"), 400)
    error_of(api.call("GET", f"/v1/event-replays/{uuid.uuid4()}"), 404)
    error_of(api.call("GET", "/v1/event-replays/nope"), 400)
    # Nothing was replayed by any of it.
    assert _replay_counts(module_db_url, account) == {}
    assert api.data("GET", "/v1/events?status=dead_letter")["total"] == 50


def test_api_job_replays_each_match_once_linked_to_its_original(api, sink, module_db_url):
    objs = api.pipeline(sink.url)
    account, source, dest = _account_id(api), objs["source"]["id"], objs["destination"]["id"]
    _dead_letters(module_db_url, account, source, dest, 300, "order.failed")
    _dead_letters(module_db_url, account, source, dest, 100, "invoice.failed")

    job = api.data(
        "POST", "/v1/events/replay", {"status": "dead_letter", "event_type": "order.failed"}, 202
    )
    assert job["state"] == "pending" and job["total"] == 300 and job["runner"] == "background"
    assert job["filter"] == {"status": "dead_letter", "event_type": "order.failed"}
    done = _finished(api, job["id"])
    assert done["state"] == "finished" and done["replayed"] == 300 and done["skipped"] == 0
    assert done["finished_at"] and done["started_at"]

    counts = _replay_counts(module_db_url, account)
    assert len(counts) == 300 and set(counts.values()) == {1}
    # Linked exactly as a single replay links: replay_of, created_by, the original replayed.
    original = next(iter(counts))
    replay_id, created_by, body = sql_rows(
        module_db_url, "SELECT id, created_by, body FROM events WHERE replay_of = %s", (original,)
    )[0]
    assert created_by == f"replay:{original}"
    assert api.data("GET", f"/v1/events/{original}")["event"]["status"] == "replayed"
    copy = api.data("GET", f"/v1/events/{replay_id}")["event"]
    assert copy["replay_of"] == original and copy["body"] == bytes(body).decode()
    wait_for(lambda: len(sink.requests) == 300, 60, "300 replays at the sink")
    assert api.data("GET", "/v1/events?status=dead_letter")["total"] == 100  # the invoices
    # Running the same filter again finds nothing left to replay.
    again = api.data(
        "POST", "/v1/events/replay", {"status": "dead_letter", "event_type": "order.failed"}, 202
    )
    assert again["total"] == 0 and _finished(api, again["id"])["replayed"] == 0


def test_replay_to_one_destination_delivers_only_there(api, sink):
    other_sink = Sink()
    try:
        objs = api.pipeline(sink.url)
        second = api.data(
            "POST", "/v1/destinations", {"name": "b", "url": other_sink.url + "/b"}, 201
        )
        api.data(
            "POST",
            "/v1/routes",
            {"source_id": objs["source"]["id"], "destination_id": second["id"]},
            201,
        )
        sent = [
            requests.post(objs["source"]["ingest_url"], data=f"e{i}".encode()).json()["data"]
            for i in range(3)
        ]
        wait_for(lambda: len(sink.requests) == 3 and len(other_sink.requests) == 3)

        job = api.data(
            "POST",
            "/v1/events/replay",
            {"source_id": objs["source"]["id"], "to_destination_id": second["id"]},
            202,
        )
        assert _finished(api, job["id"])["replayed"] == 3
        wait_for(lambda: len(other_sink.requests) == 6, what="3 replays at the second sink")
        events = api.data("GET", "/v1/events?limit=200")["items"]
        replays = [e for e in events if e["replay_of"]]
        assert sorted(e["replay_of"] for e in replays) == sorted(e["id"] for e in sent)
        for replay in replays:
            wait_for(
                lambda r=replay: (
                    api.data("GET", f"/v1/events/{r['id']}")["event"]["status"] == "delivered"
                )
            )
            attempts = api.data("GET", f"/v1/events/{replay['id']}")["attempts"]
            assert {a["destination_id"] for a in attempts} == {second["id"]}
        assert len(sink.requests) == 3  # the first destination got nothing more
        assert sorted(other_sink.bodies()[3:]) == [b"e0", b"e1", b"e2"]
    finally:
        other_sink.close()


def _cli(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*gethookd_command(), "replay", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _job_progress(db_url: str, account: str) -> tuple[str, str, int] | None:
    rows = sql_rows(
        db_url,
        "SELECT id, state, replayed FROM replay_jobs WHERE account_id = %s AND runner = 'cli'",
        (account,),
    )
    return (str(rows[0][0]), rows[0][1], rows[0][2]) if rows else None


def _kill_half_way(proc: subprocess.Popen, db_url: str, account: str, at_least: int) -> int:
    def progressed() -> bool:
        found = _job_progress(db_url, account)
        if proc.poll() is not None:
            raise AssertionError(f"the CLI ended early:\n{proc.stdout.read()}")
        return found is not None and found[2] >= at_least

    wait_for(progressed, 60, f"{at_least} replays by the CLI")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return _job_progress(db_url, account)[2]


def test_cli_killed_half_way_and_resumed_replays_each_once(api, module_db_url, encryption_key):
    batch = "100"
    env = {"DATABASE_URL": module_db_url, "ENCRYPTION_KEY": encryption_key, "LOG_LEVEL": "warning"}
    objs = api.pipeline("http://127.0.0.1:9")
    account, source, dest = _account_id(api), objs["source"]["id"], objs["destination"]["id"]
    # Paused: the replays' deliveries wait (held), so this measures replay, not sending.
    api.data("PATCH", f"/v1/destinations/{dest}", {"active": False})
    _dead_letters(module_db_url, account, source, dest, 3000, "order.failed")
    intruder = Api(api.base).register(f"other-{uuid.uuid4().hex[:8]}@example.com")
    theirs = intruder.pipeline("http://127.0.0.1:9")
    other_account = _account_id(intruder)
    _dead_letters(
        module_db_url,
        other_account,
        theirs["source"]["id"],
        theirs["destination"]["id"],
        500,
        "order.failed",
    )

    filters = ["--account", account, "--status", "dead_letter", "--event-type", "order.failed"]
    dry = _cli(env, *filters, "--dry-run")
    assert dry.wait(60) == 0 and "3000 event(s) would be replayed" in dry.stdout.read()
    bad = _cli(env, *filters, "--since", "junk")
    assert bad.wait(60) == 2 and "since" in bad.stdout.read()

    run = [*filters, "--rate", "800", "--batch-size", batch]
    first = _kill_half_way(_cli(env, *run), module_db_url, account, 300)
    job_id, state, _ = _job_progress(module_db_url, account)
    assert state == "running" and 300 <= first < 3000
    second = _kill_half_way(
        _cli(env, "--resume", job_id, "--batch-size", batch), module_db_url, account, first + 200
    )
    assert first < second < 3000
    last = _cli(env, *run)  # the same command again: resumes the unfinished job
    assert last.wait(120) == 0, last.stdout.read()
    output = last.stdout.read()
    assert f"resuming replay job {job_id}" in output and "3000 event(s) replayed" in output

    job = api.data("GET", f"/v1/event-replays/{job_id}")
    assert job["state"] == "finished" and job["replayed"] == 3000 and job["runner"] == "cli"
    counts = _replay_counts(module_db_url, account)
    assert len(counts) == 3000 and set(counts.values()) == {1}  # each original exactly once
    items = sql_rows(
        module_db_url, "SELECT count(*) FROM replay_job_items WHERE job_id = %s", (job_id,)
    )
    assert items == [(3000,)]
    # The other account's events were never touched.
    assert _replay_counts(module_db_url, other_account) == {}
    assert intruder.data("GET", "/v1/events?status=dead_letter")["total"] == 500
    error_of(intruder.call("GET", f"/v1/event-replays/{job_id}"), 404)
    # A finished job resumed is nothing to do.
    done = _cli(env, "--resume", job_id)
    assert done.wait(60) == 0 and "finished: nothing to do" in done.stdout.read()


def test_one_runner_per_job_and_cancel(api, module_db_url, encryption_key):
    from gethookd import config as config_mod
    from gethookd.db import Database
    from gethookd.services.replay import Replays

    objs = api.pipeline("http://127.0.0.1:9")
    account, source, dest = _account_id(api), objs["source"]["id"], objs["destination"]["id"]
    api.data("PATCH", f"/v1/destinations/{dest}", {"active": False})
    _dead_letters(module_db_url, account, source, dest, 20, "slow")
    config = config_mod.load(
        None, {"DATABASE_URL": module_db_url, "ENCRYPTION_KEY": encryption_key}
    )
    database = Database(module_db_url, maxconn=2)
    replays = Replays(config, database)
    try:
        from gethookd.services.event_filter import EventFilter

        job = replays.create(uuid.UUID(account), EventFilter(event_type="slow"), runner="cli")
        holder = psycopg2.connect(module_db_url)
        holder.autocommit = True
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtextextended(%s::text, 7365))", (job["id"],))
        assert replays.run(job["id"]) is None  # another runner holds it
        holder.close()
        # Cancelled after its first batch: what was replayed stays, nothing more is.
        calls = []

        def stopping() -> bool:
            calls.append(1)
            if len(calls) == 2:
                assert api.data("DELETE", f"/v1/event-replays/{job['id']}")["state"] == "cancelled"
            return False

        cancelled = replays.run(job["id"], batch=5, stopping=stopping)
        assert cancelled["state"] == "cancelled" and cancelled["replayed"] == 5
        assert len(_replay_counts(module_db_url, account)) == 5
        again = replays.run(job["id"])
        assert again["state"] == "cancelled" and again["replayed"] == 5
    finally:
        database.close()


def test_replay_to_one_destination_leaves_the_others_waiting(api, sink, module_db_url):
    """The original's delivery to another destination still waits (held, paused): it is
    neither cancelled nor stopped by a replay to the first one."""
    objs = api.pipeline(sink.url)
    source, first = objs["source"], objs["destination"]
    paused = api.data("POST", "/v1/destinations", {"name": "p", "url": sink.url + "/p"}, 201)
    api.data("PATCH", f"/v1/destinations/{paused['id']}", {"active": False})
    api.data("POST", "/v1/routes", {"source_id": source["id"], "destination_id": paused["id"]}, 201)
    event = requests.post(source["ingest_url"], data=b"both").json()["data"]
    wait_for(lambda: len(sink.requests) == 1, what="the delivery to the active destination")

    body = {"source_id": source["id"], "to_destination_id": first["id"]}
    job = api.data("POST", "/v1/events/replay", body, 202)
    assert _finished(api, job["id"])["replayed"] == 1
    wait_for(lambda: len(sink.requests) == 2, what="the replay at the active destination")
    assert [r["path"] for r in sink.requests] == ["/hook", "/hook"]
    statuses = dict(
        sql_rows(
            module_db_url,
            "SELECT destination_id::text, status FROM deliveries WHERE event_id = %s",
            (event["id"],),
        )
    )
    assert statuses == {first["id"]: "succeeded", paused["id"]: "held"}
    assert api.data("GET", f"/v1/events/{event['id']}")["event"]["status"] != "replayed"
    [replay_id] = [
        str(r[0])
        for r in sql_rows(
            module_db_url, "SELECT id FROM events WHERE replay_of = %s", (event["id"],)
        )
    ]
    targets = sql_rows(
        module_db_url,
        "SELECT destination_id::text FROM deliveries WHERE event_id = %s",
        (replay_id,),
    )
    assert targets == [(first["id"],)]
