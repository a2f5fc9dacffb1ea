"""A delivery process: wait for work, claim what free slots can take, send on greenlets.

Imported only in a freshly forked child (or a test), after gevent has patched the process.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable

import gevent
import gevent.event
import gevent.pool
import psycopg2
import requests
from gevent.socket import wait_read

from gethookd import db, deliver, queue, retry
from gethookd.config import Config
from gethookd.crypto import SecretBox
from gethookd.db import Database

log = logging.getLogger("gethookd.worker")

CLAIM_BATCH = 50


class DeliveryWorker:
    def __init__(self, config: Config, database: Database) -> None:
        self.config = config
        self.db = database
        self.box = SecretBox(config.ENCRYPTION_KEY)
        self.pool = gevent.pool.Pool(config.WORKER_MAX_CONCURRENCY)
        self.wake = gevent.event.Event()
        self.stopping = False
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_maxsize=config.WORKER_MAX_CONCURRENCY, max_retries=0
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    # -- main loop ---------------------------------------------------------------------

    def run(self) -> None:
        """Claim for free slots until stopped; then let in-flight sends finish (bounded)."""
        listener = gevent.spawn(self._listen)
        failures = 0
        while not self.stopping:
            free = self.pool.free_count()
            if free == 0:
                self.pool.wait_available(timeout=1.0)
                continue
            try:
                jobs = queue.claim(self.db, min(free, CLAIM_BATCH), self.config.lease_seconds)
                failures = 0
            except psycopg2.Error as exc:
                failures += 1
                delay = min(30.0, 0.5 * 2**failures)
                log.error("claiming deliveries failed (%s); retrying in %.1fs", exc, delay)
                self._sleep(delay)
                continue
            for job in jobs:
                self.pool.spawn(self._process, job)
            if len(jobs) < free:
                self._sleep(self.config.WORKER_POLL_INTERVAL)
        listener.kill(block=False)
        self._drain()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def _sleep(self, seconds: float) -> None:
        self.wake.wait(timeout=seconds)
        self.wake.clear()

    def _drain(self) -> None:
        in_flight = len(self.pool)
        if in_flight:
            log.info("draining %d in-flight deliveries", in_flight)
        if not self.pool.join(timeout=self.config.DRAIN_TIMEOUT):
            log.warning(
                "%d deliveries still in flight after DRAIN_TIMEOUT; they are retried "
                "once their lease expires",
                len(self.pool),
            )
            self.pool.kill(block=True, timeout=5)

    def _listen(self) -> None:
        """LISTEN for new work; wake the main loop on every notification."""
        while not self.stopping:
            try:
                conn = db.connect(self.db.dsn, autocommit=True)
                try:
                    with conn.cursor() as cur:
                        cur.execute(db.QUERIES["listen_deliveries"])
                    self.wake.set()  # anything queued while we were not listening
                    while not self.stopping:
                        wait_read(conn.fileno())
                        conn.poll()
                        if conn.notifies:
                            conn.notifies.clear()
                            self.wake.set()
                finally:
                    conn.close()
            except psycopg2.Error as exc:
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
                gevent.sleep(min(5.0, self.config.WORKER_POLL_INTERVAL))

    # -- one delivery --------------------------------------------------------------------

    def _process(self, job: queue.Job) -> None:
        result = deliver.send(self._request(job), self.session)
        retry_in = None
        if not result.ok:
            retry_in = retry.next_delay(
                job.attempt_number,
                job.max_attempts,
                job.backoff,
                self.config.RETRY_BASE_DELAY,
                self.config.RETRY_MAX_DELAY,
            )
        status = self._finish(job, result, retry_in)
        _log_transition(job, result, status, retry_in)

    def _request(self, job: queue.Job) -> deliver.Request:
        dest = str(job.destination_id)
        secret = auth = None
        if job.signing_secret_enc:
            secret = self.box.decrypt(job.signing_secret_enc, f"destinations.signing_secret:{dest}")
        if job.auth_config_enc:
            import json

            auth = json.loads(
                self.box.decrypt(job.auth_config_enc, f"destinations.auth_config:{dest}")
            )
        return deliver.Request(
            url=job.url,
            body=job.body,
            content_type=job.content_type,
            event_id=str(job.event_id),
            event_type=job.event_type,
            attempt_number=job.attempt_number,
            timeout=min(float(job.timeout_seconds), self.config.DELIVERY_TIMEOUT),
            signing_secret=secret,
            custom_headers=job.custom_headers,
            auth_config=auth,
        )

    def _finish(
        self, job: queue.Job, result: deliver.Outcome, retry_in: float | None
    ) -> str | None:
        """Retry the bookkeeping briefly; if the database stays away the lease covers us."""
        for pause in (0.2, 1.0, 3.0, None):
            try:
                return queue.finish(self.db, job, result, retry_in)
            except psycopg2.Error as exc:
                if pause is None:
                    log.error(
                        "could not record delivery %s (%s); it is retried after its lease expires",
                        job.delivery_id,
                        exc,
                    )
                    return "unrecorded"
                gevent.sleep(pause)
        return None


def _log_transition(
    job: queue.Job, result: deliver.Outcome, status: str | None, retry_in: float | None
) -> None:
    what = f"{result.outcome}" + (f" ({result.response_status})" if result.response_status else "")
    head = (
        f"event {job.event_id} delivery {job.delivery_id} attempt "
        f"{job.attempt_number}/{job.max_attempts} -> {what} in {result.latency_ms}ms"
    )
    fields = {
        "event_id": str(job.event_id),
        "delivery_id": str(job.delivery_id),
        "attempt": job.attempt_number,
        "outcome": result.outcome,
    }
    if status is None:
        log.warning(
            "%s; lease lost to another worker, result discarded", head, extra={"fields": fields}
        )
    elif status == "succeeded":
        log.info("%s: delivered", head, extra={"fields": fields})
    elif status == "dead":
        log.warning("%s: dead-lettered (%s)", head, result.error_message, extra={"fields": fields})
    elif status == "pending":
        log.info(
            "%s: retry in %.1fs (%s)",
            head,
            retry_in,
            result.error_message,
            extra={"fields": fields},
        )


def main(config: Config, index: int = 1, ready: Callable[[], None] | None = None) -> int:
    """Entry point of a forked delivery process (already monkey-patched); its exit code."""
    db.make_cooperative()
    database = Database(config.DATABASE_URL, maxconn=config.WORKER_MAX_CONCURRENCY + 2)
    worker = DeliveryWorker(config, database)
    gevent.signal_handler(signal.SIGTERM, worker.stop)
    # SIGINT/SIGQUIT: stop at once; leases of unfinished sends expire and are retried.
    for sig in (signal.SIGINT, signal.SIGQUIT):
        gevent.signal_handler(sig, _exit_now)
    log.info("delivery process %d ready (max concurrency %d)", index, config.WORKER_MAX_CONCURRENCY)
    if ready:
        ready()
    started = time.monotonic()
    worker.run()
    database.close()
    log.info("delivery process %d stopped after %.0fs", index, time.monotonic() - started)
    return 0


def _exit_now() -> None:
    import os

    os._exit(0)
