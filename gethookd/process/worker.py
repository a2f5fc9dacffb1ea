"""A delivery process: wait for work, claim what free slots can take, send on greenlets.

Imported only in a freshly forked child (or a test), after gevent has patched the process.

    run():       wait (NOTIFY | poll interval | a retry falling due | stop)
                 -> queue.claim(free slots)  [one committed transaction]
                 -> pool.spawn(_process) per job
    _process():  deliver.send (no transaction open) -> retry.next_delay on failure
                 -> queue.finish  [one short, lease-fenced transaction]
    stop():      no more claims; in-flight sends finish within DRAIN_TIMEOUT, and any
                 still running then are cancelled and their leases given back.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable
from typing import TypeVar

import gevent
import gevent.event
import gevent.pool
import psycopg2
from gevent.socket import wait_read

from gethookd import db, deliver, queue, retry, ssrf
from gethookd.config import Config
from gethookd.crypto import SecretBox, aad
from gethookd.db import Database

log = logging.getLogger("gethookd.worker")
T = TypeVar("T")

CLAIM_BATCH = 50
LISTEN_HEARTBEAT = 30.0  # seconds of silence after which the LISTEN connection is probed
HEARTBEAT_TIMEOUT = 10.0


class DeliveryWorker:
    def __init__(self, config: Config, database: Database) -> None:
        self.config = config
        self.db = database
        self.box = SecretBox(config.ENCRYPTION_KEY)
        self.pool = gevent.pool.Pool(config.WORKER_MAX_CONCURRENCY)
        self.wake = gevent.event.Event()
        self.stopping = False
        self.in_flight: dict[object, queue.Job] = {}  # delivery id -> job being sent
        self._retry_due: float | None = None  # monotonic time a retry of ours falls due
        self._idle_until = 0.0  # monotonic end of the current idle wait (0: not waiting)
        # No cookies, no retries, and every connection checked by the SSRF policy.
        self.session = deliver.new_session(
            ssrf.Policy.from_config(config), pool_maxsize=config.WORKER_MAX_CONCURRENCY
        )

    # -- main loop ---------------------------------------------------------------------

    def run(self) -> None:
        """Claim for free slots until stopped; then let in-flight sends finish (bounded)."""
        listener = gevent.spawn(self._listen)
        failures = 0
        try:
            while not self.stopping:
                free = self.pool.free_count()
                if free == 0:
                    self.pool.wait_available(timeout=1.0)
                    continue
                # Cleared before the claim: a NOTIFY that arrives while we claim wakes the
                # next wait at once instead of being lost.
                self.wake.clear()
                try:
                    limit = min(free, CLAIM_BATCH)
                    jobs = self._db_call(
                        lambda limit=limit: queue.claim(self.db, limit, self.config.lease_seconds)
                    )
                    failures = 0
                except psycopg2.Error as exc:
                    failures += 1
                    delay = min(30.0, 0.5 * 2**failures)
                    log.error("claiming deliveries failed (%s); retrying in %.1fs", exc, delay)
                    self.wake.wait(timeout=delay)
                    continue
                for job in jobs:
                    self.in_flight[job.delivery_id] = job
                    self.pool.spawn(self._process, job)
                if len(jobs) < limit:
                    timeout = self._idle_timeout()
                    self._idle_until = time.monotonic() + timeout
                    self.wake.wait(timeout=timeout)
                    self._idle_until = 0.0
        finally:
            listener.kill(block=False)
            self._drain()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def _idle_timeout(self) -> float:
        """Nothing more is due now: sleep until the poll interval, or until a retry that
        this process scheduled falls due, whichever is first (a NOTIFY cuts it short)."""
        timeout = self.config.WORKER_POLL_INTERVAL
        if self._retry_due is not None:
            until = self._retry_due - time.monotonic()
            if until <= timeout:
                self._retry_due = None
                timeout = max(0.0, until)
        return timeout

    def _note_retry(self, retry_in: float) -> None:
        due = time.monotonic() + retry_in
        if self._retry_due is None or due < self._retry_due:
            self._retry_due = due
        if self._idle_until and due < self._idle_until:
            self.wake.set()  # the main loop sleeps past it: wake it to shorten the wait

    def _drain(self) -> None:
        in_flight = len(self.pool)
        if in_flight:
            log.info("draining %d in-flight deliveries", in_flight)
        if self.pool.join(timeout=self.config.DRAIN_TIMEOUT):
            return
        log.warning(
            "%d deliveries still in flight after DRAIN_TIMEOUT; cancelling them", len(self.pool)
        )
        self.pool.kill(block=True, timeout=5)
        reason = "the delivery process stopped (DRAIN_TIMEOUT) before this attempt finished"
        for job in list(self.in_flight.values()):
            try:
                queue.release(self.db, job, reason)
            except psycopg2.Error as exc:
                log.error("could not give back delivery %s (%s)", job.delivery_id, exc)
        self.in_flight.clear()

    def _listen(self) -> None:
        """LISTEN for new work and wake the main loop on every notification. A connection
        that goes quiet is probed; a lost one is re-opened while the main loop polls."""
        pause = 0.5
        while not self.stopping:
            conn = None
            try:
                conn = db.connect(self.db.dsn, autocommit=True)
                with conn.cursor() as cur:
                    cur.execute(db.QUERIES["listen_deliveries"])
                    pause = 0.5
                    self.wake.set()  # anything queued while we were not listening
                    while not self.stopping:
                        try:
                            wait_read(conn.fileno(), timeout=LISTEN_HEARTBEAT)
                        except TimeoutError:
                            with gevent.Timeout(HEARTBEAT_TIMEOUT, psycopg2.OperationalError):
                                cur.execute("SELECT 1")
                        conn.poll()
                        if conn.notifies:
                            conn.notifies.clear()
                            self.wake.set()
            except gevent.GreenletExit:
                raise
            except Exception as exc:  # the listener must outlive any failure
                if self.stopping:
                    return
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
                gevent.sleep(pause)
                pause = min(pause * 2, 5.0, self.config.WORKER_POLL_INTERVAL)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass

    # -- one delivery --------------------------------------------------------------------

    def _process(self, job: queue.Job) -> None:
        try:
            result = self._attempt(job)
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
            self.in_flight.pop(job.delivery_id, None)
            if status == "pending" and retry_in is not None:
                self._note_retry(retry_in)
            _log_transition(job, result, status, retry_in)
        except gevent.GreenletExit:
            raise  # killed at the end of a drain: _drain gives the lease back
        except Exception:
            log.exception("delivery %s failed unexpectedly", job.delivery_id)
            self.in_flight.pop(job.delivery_id, None)  # its lease expires; it is retried

    def _attempt(self, job: queue.Job) -> deliver.Outcome:
        try:
            request = self._request(job)
        except Exception as exc:  # e.g. a secret that no longer decrypts: a failed attempt
            message = f"cannot build the request: {type(exc).__name__}: {exc}"
            return deliver.Outcome("network_error", None, None, message[:1000], 0)
        return deliver.send(request, self.session)

    def _request(self, job: queue.Job) -> deliver.Request:
        dest = str(job.destination_id)
        secret = auth = None
        if job.signing_secret_enc:
            secret = self.box.decrypt(
                job.signing_secret_enc, aad("destinations.signing_secret", dest)
            )
        if job.auth_config_enc:
            auth = json.loads(
                self.box.decrypt(job.auth_config_enc, aad("destinations.auth_config", dest))
            )
        timeout = self.config.DELIVERY_TIMEOUT
        if job.timeout_seconds and job.timeout_seconds > 0:
            timeout = min(float(job.timeout_seconds), timeout)
        return deliver.Request(
            url=job.url,
            body=job.body,
            content_type=job.content_type,
            event_id=str(job.event_id),
            event_type=job.event_type,
            attempt_number=job.attempt_number,
            timeout=timeout,
            signing_secret=secret,
            custom_headers=job.custom_headers,
            auth_config=auth,
        )

    def _finish(
        self, job: queue.Job, result: deliver.Outcome, retry_in: float | None
    ) -> str | None:
        """Retry the bookkeeping briefly; if the database stays away the lease covers us."""
        try:
            return self._db_call(
                lambda: queue.finish(self.db, job, result, retry_in), pauses=(0.2, 1.0, 3.0)
            )
        except psycopg2.Error as exc:
            log.error(
                "could not record delivery %s (%s); it is retried after its lease expires",
                job.delivery_id,
                exc,
            )
            return "unrecorded"

    def _db_call(self, call: Callable[[], T], pauses: tuple[float, ...] = ()) -> T:
        """call(), retried on connection errors: at once as often as the pool may hold dead
        connections (after a database restart every pooled one is; each failed try
        discards one), then after each of `pauses`. Other database errors are raised."""
        quick = self.config.WORKER_MAX_CONCURRENCY + 2
        waits = [0.0] * quick + list(pauses)
        for wait in waits:
            try:
                return call()
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                log.debug("database call failed (%s); retrying in %.1fs", exc, wait)
                if wait:
                    gevent.sleep(wait)
        return call()


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
    elif status == "cancelled":
        log.info("%s: not retried, the event was replayed", head, extra={"fields": fields})


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
