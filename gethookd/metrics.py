"""Prometheus metrics, one view across every API and delivery process.

gethookd runs many processes (the master, gunicorn's API workers, delivery processes), and
a scrape reaches only one of them, so counters and histograms use prometheus_client's
multiprocess mode: the master makes a private directory and exports it as
PROMETHEUS_MULTIPROC_DIR before it forks (gethookd.process.metrics_dir); each process
writes its samples there (mmap'd files), and `/metrics` adds them up. prometheus_client
picks its value store when it is first imported, so this module is imported only after
that directory is set (in a single process without it, plain in-memory values are used).

Queue depth, the oldest due delivery and destinations by state are not counted by any
process: they are read from the database when a scrape asks (`render(snapshot)`).
"""

from __future__ import annotations

import bisect
import collections
import os
import struct
import time
from collections.abc import Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by the master (gethookd.process.metrics_dir)

EVENTS_RECEIVED = Counter(
    "gethookd_events_received_total",
    "Webhooks posted to ingest URLs, by source and outcome "
    "(accepted, duplicate, refused_verification, too_large, unknown_source).",
    ["source", "outcome"],
)
EVENTS_PUBLISHED = Counter(
    "gethookd_events_published_total",
    "Outbound events published through the API, by outcome (accepted, duplicate).",
    ["outcome"],
)
INGEST_SECONDS = Histogram(
    "gethookd_ingest_seconds",
    "Time from a webhook's arrival until it is stored and queued (or found a duplicate).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ATTEMPTS = Counter(
    "gethookd_delivery_attempts_total",
    "Delivery attempts, by outcome (success, timeout, network_error, http_4xx, http_5xx, "
    "cancelled, refused) and status class of the destination's answer (2xx..5xx, none).",
    ["outcome", "status_class"],
)
ATTEMPT_SECONDS = Histogram(
    "gethookd_delivery_attempt_seconds",
    "Duration of delivery attempts, from connect to the end of the answer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DEAD_LETTERS = Counter(
    "gethookd_dead_letters_total", "Deliveries that used up their attempts (dead-lettered)."
)
PROCESSES = Gauge(
    "gethookd_processes",
    "Running gethookd processes by role (api, worker).",
    ["role"],
    multiprocess_mode="livesum",
)
RESTARTS = Counter(
    "gethookd_process_restarts_total",
    "Child processes the master restarted after they exited unexpectedly, by role.",
    ["role"],
)


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """histogram.observe() of each amount, with one write per bucket touched.

    In multiprocess mode each observe() writes two mmap'd values under a lock; a group
    commit observes a whole batch. Reaches into the histogram's values (prometheus_client's
    own layout since its first releases); observes one by one if that layout changes.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    if not amounts:
        return
    counts = [0] * len(bounds)
    for amount in amounts:
        counts[bisect.bisect_left(bounds, amount)] += 1  # the first bound >= amount
    total.inc(sum(amounts))
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)


def status_class(status: int | None) -> str:
    return f"{status // 100}xx" if status else "none"


def record_attempts(recorded: Sequence[tuple]) -> None:
    """Finished attempts (deliver.Outcome, status as recorded), counted once per batch.

    A status of None means the lease was lost and nothing was recorded: not counted, the
    process that took the delivery over counts its own attempt.
    """
    attempts: collections.Counter[tuple[str, str]] = collections.Counter()
    seconds = []
    dead = 0
    for result, status in recorded:
        if status is None:
            continue
        attempts[result.outcome, status_class(result.response_status)] += 1
        seconds.append(result.latency_ms / 1000.0)
        dead += status == "dead"
    for (outcome, status_class_), count in attempts.items():
        ATTEMPTS.labels(outcome, status_class_).inc(count)
    observe_many(ATTEMPT_SECONDS, seconds)
    if dead:
        DEAD_LETTERS.inc(dead)


class _Snapshot:
    """Gauges read from the database at scrape time."""

    def __init__(self, snapshot: dict) -> None:
        self.snapshot = snapshot

    def collect(self):
        s = self.snapshot
        depth = GaugeMetricFamily(
            "gethookd_queue_deliveries",
            "Deliveries waiting or in flight, by state: due (to send now), scheduled "
            "(a retry later), in_flight (being sent), held (destination cannot take them).",
            labels=["state"],
        )
        for state in ("due", "scheduled", "in_flight", "held"):
            depth.add_metric([state], s.get(state, 0))
        yield depth
        yield GaugeMetricFamily(
            "gethookd_queue_oldest_due_seconds",
            "Age of the oldest delivery that is due and not yet claimed (0 if none).",
            value=s.get("oldest_due_seconds") or 0.0,
        )
        states = GaugeMetricFamily(
            "gethookd_destinations",
            "Destinations by state (active, paused, circuit_open, disabled).",
            labels=["state"],
        )
        for state, count in sorted((s.get("destinations") or {}).items()):
            states.add_metric([state], count)
        yield states


def render(snapshot: dict | None) -> tuple[bytes, str]:
    """The exposition text: every process's samples added up, and the database's snapshot.

    A process that is starting (its sample file created but still empty) or was killed in
    the middle of a write can make one read of the directory fail; the read is tried again.
    """
    for attempt in range(3):
        try:
            return generate_latest(_registry(snapshot)), CONTENT_TYPE_LATEST
        except (ValueError, RuntimeError, struct.error, OSError):
            if attempt == 2:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")


def _registry(snapshot: dict | None) -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:  # one process (tests, benchmarks): its own in-memory values
        from prometheus_client import REGISTRY

        registry.register(_Proxy(REGISTRY))
    if snapshot is not None:
        registry.register(_Snapshot(snapshot))
    return registry


class _Proxy:
    def __init__(self, registry) -> None:
        self.registry = registry

    def collect(self):
        return self.registry.collect()
