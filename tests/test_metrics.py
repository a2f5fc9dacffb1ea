"""/metrics: Prometheus text, added up across every API and delivery process of a gateway."""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gethookd import metrics
from helpers import Api, Sink, wait_for

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape(url: str, token: str | None = None) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = requests.get(url + "/metrics", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for line in resp.text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = SAMPLE.match(line)
        assert match, f"not in the exposition format: {line!r}"
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    found = 0.0
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            found += value
    return found


def test_metrics_add_up_across_processes_under_load(daemon_factory):
    sink = Sink(lambda n, path, body: (500 if b'"fail"' in body else 200, 0.0))
    try:
        daemon = daemon_factory(API_WORKERS="2", WORKER_PROCESSES="2", METRICS_TOKEN="s3cret")
        api = Api(daemon.url).register("metrics@example.com")
        pipe = api.pipeline(sink.url, retry_policy={"max_attempts": 1})
        source_id = pipe["source"]["id"]
        path = urlsplit(pipe["source"]["ingest_url"]).path

        # Protected: no token, a wrong token.
        assert requests.get(daemon.url + "/metrics", timeout=5).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert requests.get(daemon.url + "/metrics", headers=wrong, timeout=5).status_code == 401

        ok_count, fail_count = 120, 10

        def post(bodies: list[bytes]) -> None:
            with requests.Session() as session:  # new connections spread over both workers
                for body in bodies:
                    resp = session.post(daemon.url + path, data=body, timeout=10)
                    assert resp.status_code == 202, resp.text

        bodies = [b'{"type":"ok"}'] * ok_count + [b'{"type":"fail"}'] * fail_count
        threads = [threading.Thread(target=post, args=(bodies[k::8],)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert requests.post(daemon.url + "/ingest/no-such-token", data=b"{}").status_code == 404

        sent = ok_count + fail_count

        def settled() -> dict | None:
            samples = scrape(daemon.url, "s3cret")
            done = total(samples, "gethookd_delivery_attempts_total")
            return samples if done >= sent else None

        samples = wait_for(settled, 30, "every attempt to show in /metrics")
        assert total(samples, "gethookd_events_received_total", source=source_id) == sent
        assert (
            total(samples, "gethookd_events_received_total", outcome="accepted", source=source_id)
            == sent
        )
        assert total(samples, "gethookd_delivery_attempts_total", outcome="success") == ok_count
        assert (
            total(
                samples, "gethookd_delivery_attempts_total", outcome="http_5xx", status_class="5xx"
            )
            == fail_count
        )
        assert total(samples, "gethookd_dead_letters_total") == fail_count
        assert total(samples, "gethookd_delivery_attempt_seconds_count") == sent
        assert total(samples, "gethookd_ingest_seconds_count") == sent
        assert total(samples, "gethookd_processes", role="api") == 2
        assert total(samples, "gethookd_processes", role="worker") == 2
        assert total(samples, "gethookd_queue_deliveries", state="due") == 0
        assert total(samples, "gethookd_destinations", state="active") >= 1
        assert "gethookd_queue_oldest_due_seconds" in samples
    finally:
        sink.close()


def test_queue_depth_and_paused_destinations_are_read_from_the_database(daemon_factory):
    daemon = daemon_factory(WORKER_PROCESSES="1")
    api = Api(daemon.url).register("depth@example.com")
    sink = Sink()
    try:
        pipe = api.pipeline(sink.url)
        dest_id = pipe["destination"]["id"]
        api.data("PATCH", f"/v1/destinations/{dest_id}", {"active": False})
        path = urlsplit(pipe["source"]["ingest_url"]).path
        for _ in range(5):
            assert requests.post(daemon.url + path, json={"a": 1}, timeout=5).status_code == 202
        samples = wait_for(
            lambda: (
                (s := scrape(daemon.url))
                and total(s, "gethookd_queue_deliveries", state="held") == 5
                and s
            ),
            15,
            "five held deliveries in /metrics",
        )
        assert total(samples, "gethookd_destinations", state="paused") == 1
        assert sink.requests == []
    finally:
        sink.close()


def test_a_restarted_api_worker_is_not_counted_twice(daemon_factory):
    import os
    import signal

    import psutil

    daemon = daemon_factory(API_WORKERS="2", WORKER_PROCESSES="1")
    wait_for(
        lambda: total(scrape(daemon.url), "gethookd_processes", role="api") == 2,
        15,
        "both API workers counted",
    )
    [arbiter] = daemon.children()["api"]
    workers = psutil.Process(arbiter).children()
    assert len(workers) == 2
    os.kill(workers[0].pid, signal.SIGKILL)  # gunicorn's arbiter starts a new one

    def replaced() -> bool:
        now = {p.pid for p in psutil.Process(arbiter).children()}
        return len(now) == 2 and workers[0].pid not in now

    wait_for(replaced, 20, "gunicorn to replace the killed worker")
    [new] = [p for p in psutil.Process(arbiter).children() if p.pid != workers[1].pid]

    def counted_itself() -> bool:  # the new worker has written its processes sample
        try:
            maps = new.memory_maps()
        except psutil.Error:
            return False
        return any(m.path.endswith(f"gauge_livesum_{new.pid}.db") for m in maps)

    wait_for(counted_itself, 30, "the new API worker to load the app")
    # Any API worker may answer a scrape; none may count the dead one.
    seen = {total(scrape(daemon.url), "gethookd_processes", role="api") for _ in range(10)}
    assert seen == {2}


def test_a_killed_masters_sample_directory_is_removed_by_the_next_start():
    import os
    import subprocess
    import tempfile

    from gethookd.process import metrics_dir

    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid now names no process
    orphan = tempfile.mkdtemp(prefix=f"{metrics_dir.PREFIX}{gone.pid}-")
    alive = tempfile.mkdtemp(prefix=f"{metrics_dir.PREFIX}{os.getpid()}-")
    saved = os.environ.get(metrics_dir.ENV)
    try:
        mine = metrics_dir.use_directory()
        assert not os.path.exists(orphan), "a dead master's samples are removed"
        assert os.path.isdir(alive), "a live master's samples are kept"
        assert os.environ[metrics_dir.ENV] == mine
        metrics_dir.remove_directory(mine)
        assert not os.path.exists(mine)
    finally:
        metrics_dir.remove_directory(alive)
        if saved is not None:
            os.environ[metrics_dir.ENV] = saved


def test_observe_many_counts_as_observing_each_amount():
    buckets = (0.001, 0.01, 0.1, 1.0)
    each, many = CollectorRegistry(), CollectorRegistry()
    one_by_one = Histogram("h_seconds", "h", buckets=buckets, registry=each)
    together = Histogram("h_seconds", "h", buckets=buckets, registry=many)
    amounts = [0.0005, 0.001, 0.0011, 0.05, 0.1, 3.0, 0.2, 0.2]
    for amount in amounts:
        one_by_one.observe(amount)
    metrics.observe_many(together, amounts)
    metrics.observe_many(together, [])

    def exposition(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if "_created" not in line]

    assert exposition(many) == exposition(each)
    get = many.get_sample_value
    assert get("h_seconds_bucket", {"le": "0.001"}) == 2  # a bound holds what equals it
    assert get("h_seconds_bucket", {"le": "1.0"}) == 7
    assert get("h_seconds_count") == 8 and get("h_seconds_sum") == pytest.approx(sum(amounts))


def test_api_workers_auto_starts_one_per_cpu_for_the_api_role(daemon_factory):
    """API_WORKERS=auto: an API-only instance runs one API process per usable CPU (the
    whole instance, with delivery processes beside them, one per two)."""
    from gethookd.config import usable_cpus

    daemon = daemon_factory(role="api", API_WORKERS="auto")
    wait_for(
        lambda: total(scrape(daemon.url), "gethookd_processes", role="api") == usable_cpus(),
        15,
        "one API process per CPU",
    )
    assert f"{usable_cpus()} API process(es)" in daemon.log()
    both = daemon_factory(API_WORKERS="auto")
    wait_for(
        lambda: (
            total(scrape(both.url), "gethookd_processes", role="api") == max(1, usable_cpus() // 2)
        ),
        15,
        "one API process per two CPUs",
    )
