"""Real signals to a real `gethookd run`: drain, fast stop, restarts, reload, titles."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg2
import pytest
import requests

from helpers import Api, Sink, wait_for


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def title(pid: int) -> str:
    return " ".join(psutil.Process(pid).cmdline()).strip()


def ingest(objs: dict, body: bytes) -> str:
    resp = requests.post(objs["source"]["ingest_url"], data=body, timeout=10)
    assert resp.status_code == 202, resp.text
    return resp.json()["data"]["id"]


def deliveries(db_url: str, event_id: str) -> list[tuple]:
    """(delivery status, attempt outcome, response status) straight from the database."""
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT d.status, a.outcome, a.response_status FROM deliveries d "
                "LEFT JOIN delivery_attempts a ON a.delivery_id = d.id "
                "WHERE d.event_id = %s ORDER BY a.attempt_number",
                (event_id,),
            )
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture
def slow_sink():
    """Answers the first request after 2 s, the others at once."""
    server = Sink(lambda n, path, body: (200, 2.0 if n == 1 else 0.0))
    yield server
    server.close()


def test_sigterm_lets_the_in_flight_delivery_finish_then_exits_0(daemon_factory, db_url, slow_sink):
    daemon = daemon_factory(WORKER_MAX_CONCURRENCY="1")
    api = Api(daemon.url).register()
    objs = api.pipeline(slow_sink.url)
    in_flight = ingest(objs, b'{"n": 1}')
    wait_for(lambda: slow_sink.requests, what="the first delivery to reach the sink")
    queued = ingest(objs, b'{"n": 2}')  # the only slot is busy: this one waits its turn
    children = [pid for pids in daemon.children().values() for pid in pids]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    # The master left last: no child outlived it (a drain it did not wait for would).
    assert all(gone(pid) for pid in children)
    assert deliveries(db_url, in_flight) == [("succeeded", "success", 200)]
    # Stopping means no new claims: the queued event is still waiting, untouched.
    assert deliveries(db_url, queued) == [("pending", None, None)]
    assert len(slow_sink.requests) == 1
    assert "draining 1 in-flight deliveries" in daemon.log()


def test_sigint_stops_fast(daemon_factory):
    hanging = Sink(lambda n, path, body: (200, 20.0))
    try:
        daemon = daemon_factory(DRAIN_TIMEOUT="30s")
        objs = Api(daemon.url).register().pipeline(hanging.url)
        ingest(objs, b"{}")
        wait_for(lambda: hanging.requests, what="a delivery in flight")
        children = [pid for pids in daemon.children().values() for pid in pids]
        sent = time.monotonic()
        daemon.signal(signal.SIGINT)
        assert daemon.wait(15) == 0
        assert time.monotonic() - sent < 5, "SIGINT must not wait for the drain"
        assert "fast shutdown requested" in daemon.log()
        assert all(gone(pid) for pid in children)
    finally:
        hanging.close()


def test_killed_children_are_restarted(daemon_factory, sink):
    daemon = daemon_factory()
    before = daemon.children()
    [api_pid], [worker_pid] = before["api"], before["worker"]
    api_workers = [p.pid for p in psutil.Process(api_pid).children()]
    assert api_workers, "gunicorn has workers"
    os.kill(api_pid, signal.SIGKILL)
    os.kill(worker_pid, signal.SIGKILL)

    def replaced():
        now = daemon.children()
        new_api, new_worker = now.get("api", []), now.get("worker", [])
        return (
            len(new_api) == 1
            and new_api[0] != api_pid
            and len(new_worker) == 1
            and new_worker[0] != worker_pid
        )

    wait_for(replaced, timeout=20, what="new API and delivery processes")
    # The killed gunicorn's workers notice their parent is gone and leave.
    wait_for(lambda: all(gone(pid) for pid in api_workers), what="orphaned API workers to exit")
    daemon.wait_ready()  # answered by the new API
    assert daemon.proc.poll() is None
    log = daemon.log()
    assert f"api (pid {api_pid}) died (signal 9); restarting in 0.5s" in log
    assert f"worker-1 (pid {worker_pid}) died (signal 9); restarting in 0.5s" in log
    # The new delivery process works.
    objs = Api(daemon.url).register().pipeline(sink.url)
    ingest(objs, b"after the restart")
    wait_for(lambda: sink.bodies() == [b"after the restart"], what="delivery after restart")


def test_sighup_replaces_the_children_without_dropping_anything(
    daemon_factory, db_url, slow_sink, tmp_path
):
    conf = tmp_path / "gethookd.conf"
    conf.write_text("CORS_ORIGIN=https://one.example\nWORKER_PROCESSES=1\n")
    daemon = daemon_factory(GETHOOKD_CONFIG=str(conf))
    healthz = daemon.url + "/healthz"
    assert requests.get(healthz, timeout=5).headers["Access-Control-Allow-Origin"] == (
        "https://one.example"
    )
    objs = Api(daemon.url).register().pipeline(slow_sink.url)
    before = daemon.children()
    old_pids = before["api"] + before["worker"]

    results = {"ok": 0, "failed": []}
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                # A fresh connection each time: every request goes through accept().
                resp = requests.get(healthz, timeout=10, headers={"Connection": "close"})
                if resp.status_code == 200:
                    results["ok"] += 1
                else:
                    results["failed"].append(resp.status_code)
            except requests.RequestException as exc:
                results["failed"].append(repr(exc))

    client = threading.Thread(target=hammer, daemon=True)
    client.start()
    try:
        wait_for(lambda: results["ok"] >= 20, what="the client to get going")
        in_flight = ingest(objs, b"during the reload")
        wait_for(lambda: slow_sink.requests, what="a delivery in flight")
        conf.write_text("CORS_ORIGIN=https://two.example\nWORKER_PROCESSES=2\n")
        daemon.signal(signal.SIGHUP)

        def replaced():
            now = daemon.children()
            pids = now.get("api", []) + now.get("worker", [])
            return (
                len(now.get("api", [])) == 1
                and len(now.get("worker", [])) == 2
                and (not set(pids) & set(old_pids))
            )

        wait_for(replaced, timeout=25, what="a new generation of processes (2 workers)")
        wait_for(lambda: all(gone(pid) for pid in old_pids), what="the old generation to exit")
        served = results["ok"]
        wait_for(lambda: results["ok"] >= served + 20, what="requests to the new generation")
    finally:
        stop.set()
        client.join(15)
    assert results["failed"] == []
    resp = requests.get(healthz, timeout=5)
    assert resp.headers["Access-Control-Allow-Origin"] == "https://two.example"
    # The delivery that was in flight when the old worker retired finished, once.
    assert deliveries(db_url, in_flight) == [("succeeded", "success", 200)]
    assert len(slow_sink.requests) == 1
    assert "reloading configuration (generation 2)" in daemon.log()

    # A broken file on the next reload changes nothing.
    current = daemon.children()
    conf.write_text("WORKER_PROCESSES=many\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in daemon.log(), what="the reload to be refused")
    assert daemon.children() == current
    assert requests.get(healthz, timeout=5).status_code == 200
    assert daemon.proc.poll() is None


def test_children_do_not_outlive_a_killed_master(daemon_factory):
    daemon = daemon_factory()
    kids = daemon.children()
    [api] = kids["api"]
    family = kids["api"] + kids["worker"] + [p.pid for p in psutil.Process(api).children()]
    os.kill(daemon.proc.pid, signal.SIGKILL)
    daemon.wait(10)
    wait_for(lambda: all(gone(pid) for pid in family), what="the orphaned children to exit")


def test_process_titles_name_the_roles(daemon_factory):
    daemon = daemon_factory(WORKER_PROCESSES="2", API_WORKERS="2")
    master = psutil.Process(daemon.proc.pid)
    assert title(master.pid) == "gethookd: master (all)"
    kids = daemon.children()
    workers = sorted(title(pid) for pid in kids["worker"])
    assert workers == ["gethookd: delivery worker 1", "gethookd: delivery worker 2"]
    [api] = kids["api"]
    assert title(api) == "gunicorn: master [gethookd-api]"
    wait_for(lambda: len(psutil.Process(api).children()) == 2, what="two API workers")
    assert {title(p.pid) for p in psutil.Process(api).children()} == {
        "gunicorn: worker [gethookd-api]"
    }


def test_the_master_never_loads_gevent_or_psycopg2(daemon_factory):
    daemon = daemon_factory()
    master_maps = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
    [worker] = daemon.children()["worker"]

    def worker_maps() -> str:
        return Path(f"/proc/{worker}/maps").read_text()

    # The check can see them: a delivery process, once up, has both loaded.
    wait_for(lambda: "delivery process 1 ready" in daemon.log(), what="the delivery process")
    assert "psycopg2" in worker_maps() and "greenlet" in worker_maps()
    for library in ("gevent", "greenlet", "psycopg2"):
        assert library not in master_maps


def test_the_master_modules_do_not_import_gevent_or_psycopg2():
    code = (
        "import sys\n"
        "import gethookd.cli, gethookd.process.daemon, gethookd.process.supervisor\n"
        "import gethookd.process.embedded\n"
        "print(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('gevent', 'greenlet', 'psycopg2')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_busy_port_means_exit_code_3(daemon_factory):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        daemon = daemon_factory(wait_ready=False, PORT=str(port))
        assert daemon.wait(30) == 3
    assert f"cannot listen on 127.0.0.1:{port}" in daemon.log()


def test_a_database_that_cannot_be_prepared_means_exit_code_3(daemon_factory, db_url):
    missing = urlunsplit(urlsplit(db_url)._replace(path="/gethookd_no_such_database"))
    daemon = daemon_factory(wait_ready=False, DATABASE_URL=missing, DATABASE_WAIT="1s")
    assert daemon.wait(30) == 3
    assert "cannot prepare the database" in daemon.log()


def test_startup_waits_for_a_database_that_comes_up_late(daemon_factory, pg_admin_url):
    import psycopg2

    name = "gethookd_late_" + uuid.uuid4().hex[:8]
    late = urlunsplit(urlsplit(pg_admin_url)._replace(path="/" + name))
    daemon = daemon_factory(wait_ready=False, DATABASE_URL=late, DATABASE_WAIT="60s")
    wait_for(lambda: "database not reachable yet" in daemon.log(), what="a retry")
    admin = psycopg2.connect(pg_admin_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        daemon.wait_ready()
        assert daemon.proc.poll() is None
    finally:
        daemon.kill()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


# -- Ctrl-C: SIGINT to the whole process group, as a terminal sends it ----------------------


def _marked(mark: str) -> list[psutil.Process]:
    """Every process of this user whose environment carries `mark` (the daemon's family)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("GETHOOKD_TEST_MARK") == mark:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen(1)
        except OSError:
            return False
    return True


def test_ctrl_c_to_the_process_group_leaves_nothing_behind(base_env, tmp_path, sink):
    """30 stops by SIGINT to the group: during start-up, after 0-3 s idle, under ingest."""
    from helpers import Daemon

    ingest_path = None
    pauses = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    for i in range(30):
        mark = uuid.uuid4().hex
        env = {**base_env, "API_WORKERS": "2", "GETHOOKD_TEST_MARK": mark}
        daemon = Daemon(env, tmp_path / f"ctrl-c-{i}.log")
        try:
            daemon.start(wait_ready=False)
            stop_load = threading.Event()
            load = None
            if i % 5 == 4:  # SIGINT while it starts: before or as it forks its children
                if i % 10 == 4:
                    wait_for(lambda d=daemon: "gethookd starting" in d.log(), what="start-up")
            else:
                daemon.wait_ready()
                if ingest_path is None:
                    objs = Api(daemon.url).register().pipeline(sink.url)
                    ingest_path = urlsplit(objs["source"]["ingest_url"]).path
                if i % 3 == 0:  # under load: ingest (and so deliveries) until the signal

                    def hammer(url=daemon.url + ingest_path, stop_load=stop_load):
                        with requests.Session() as session:
                            while not stop_load.is_set():
                                try:
                                    session.post(url, data=b"{}", timeout=5)
                                except requests.RequestException:
                                    pass

                    load = threading.Thread(target=hammer, daemon=True)
                    load.start()
                    wait_for(lambda: sink.requests, what="deliveries under load")
                # The idle period before Ctrl-C is the point of this test, not a wait.
                stop_load.wait(pauses[i % len(pauses)])
            os.killpg(daemon.proc.pid, signal.SIGINT)
            code = daemon.wait(20)
            stop_load.set()
            if load:
                load.join(10)
            wait_for(lambda m=mark: not _marked(m), timeout=5, what=f"no process left (stop {i})")
            assert _port_free(daemon.port), f"stop {i}: the port is still taken"
            # Signalled before Python has installed any handler, the master dies of SIGINT.
            expected = (0, -signal.SIGINT) if i % 10 == 9 else (0,)
            assert code in expected, f"stop {i}: exit code {code}\n{daemon.log()}"
        finally:
            daemon.kill()
            for leftover in _marked(mark):
                leftover.kill()


# -- SIGTTIN / SIGTTOU ---------------------------------------------------------------------


def test_sigttin_adds_and_sigttou_drains_a_delivery_process(daemon_factory, sink):
    daemon = daemon_factory()
    [first] = daemon.children()["worker"]
    daemon.signal(signal.SIGTTIN)
    wait_for(lambda: len(daemon.children().get("worker", [])) == 2, what="a second worker")
    wait_for(lambda: "delivery process 2 ready" in daemon.log(), what="worker 2 ready")
    [second] = [pid for pid in daemon.children()["worker"] if pid != first]
    assert title(second) == "gethookd: delivery worker 2"
    daemon.signal(signal.SIGTTOU)
    wait_for(lambda: gone(second), what="worker 2 to drain and exit")
    assert daemon.children()["worker"] == [first]
    log = daemon.log()
    assert "scaling up to 2 delivery process(es)" in log
    assert "scaling down to 1 delivery process(es)" in log
    assert "delivery process 2 stopped" in log, "it drained (SIGTERM), not killed"
    # Down to none: nothing is delivered; back up: the waiting event goes out.
    daemon.signal(signal.SIGTTOU)
    wait_for(lambda: gone(first), what="worker 1 to exit")
    objs = Api(daemon.url).register().pipeline(sink.url)
    ingest(objs, b"waiting for a worker")
    daemon.signal(signal.SIGTTIN)
    wait_for(lambda: sink.bodies() == [b"waiting for a worker"], what="delivery after TTIN")
    assert daemon.proc.poll() is None
