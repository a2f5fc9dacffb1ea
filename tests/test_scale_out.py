"""Two gethookd instances on one database share the work: each event delivered exactly once."""

from __future__ import annotations

import collections
import threading
from urllib.parse import urlsplit

import requests

from helpers import Api, Sink, wait_for


def test_two_instances_share_one_database(daemon_factory, tmp_path):
    sink = Sink()
    try:
        first = daemon_factory(GETHOOKD_DATA_DIR=str(tmp_path / "one"), WORKER_PROCESSES="1")
        second = daemon_factory(GETHOOKD_DATA_DIR=str(tmp_path / "two"), WORKER_PROCESSES="1")
        api = Api(first.url).register("scale@example.com")
        path = urlsplit(api.pipeline(sink.url)["source"]["ingest_url"]).path
        total = 600
        statuses: collections.Counter = collections.Counter()
        lock = threading.Lock()

        def post(index: int) -> None:
            base = (first, second)[index % 2].url  # both ingest endpoints take traffic
            resp = requests.post(base + path, json={"type": "scale.test", "n": index}, timeout=10)
            with lock:
                statuses[resp.status_code] += 1

        threads = [
            threading.Thread(target=lambda k=k: [post(i) for i in range(k, total, 8)])
            for k in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == {202: total}

        wait_for(lambda: len(sink.requests) >= total, 60, f"{total} deliveries")
        ids = collections.Counter(sink.event_ids())
        assert len(ids) == total
        assert [i for i, n in ids.items() if n > 1] == [], "an event was delivered twice"

        # Both instances' delivery processes took part.
        for daemon in (first, second):
            assert "-> success" in daemon.log(), f"{daemon.url} delivered nothing"
    finally:
        sink.close()
