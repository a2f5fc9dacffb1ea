"""A delivery process: wait for work, claim what free slots can take, send on greenlets.

Imported only in a freshly forked child (or a test), after gevent has patched the process.

    run():       wait (NOTIFY | poll interval | a retry falling due | stop)
                 -> queue.claim_fair(free slots, per-destination cap)  [one statement]
                 -> pool.spawn(_process) per job
    _process():  deliver.send (no transaction open) -> retry.next_delay on failure
                 -> hand the result to the flusher; the slot is free at once
    _flush_loop(): queue.finish_batch(everything handed over while the previous batch was
                 being written)  [one lease-fenced transaction per batch], then the
                 retry wake-ups and one log line per delivery, with the status written.
    stop():      no more claims; in-flight sends finish within DRAIN_TIMEOUT, and any
                 still running then are cancelled and their leases given back; every
                 result handed over is written before the process exits.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import psycopg2
from gevent.socket import wait_read

from gethookd import crypto, db, deliver, logs, metrics, queue, retention, retry, ssrf
from gethookd.config import Config
from gethookd.crypto import SecretBox, aad
from gethookd.db import Database
from gethookd.services import replay

log = logging.getLogger("gethookd.worker")
T = TypeVar("T")

CLAIM_BATCH = 50
LISTEN_HEARTBEAT = 30.0  # seconds of silence after which the LISTEN connection is probed
HEARTBEAT_TIMEOUT = 10.0
CLAIM_GATHER = 0.010  # seconds a busy process waits for more free slots before claiming
TURN_WAIT = 0.050  # longest a claim or a finish waits for the other's turn (see _turn)
CLAIM_RETRY = 0.050  # seconds before claiming again when every row chosen was locked
# Under load (the last batch of results held FLUSH_GATHER_FROM or more), results are written
# at most every FLUSH_GATHER seconds, in larger batches (see _flush_loop).
FLUSH_GATHER = 0.050
FLUSH_GATHER_FROM = 32
PROBE_STEP = 1.0  # seconds between two looks for open circuits whose cool-down is over
RELEASE_STEP = 1.0  # seconds between two looks for held deliveries to release, unless woken
RELEASE_REPORT = 10.0  # seconds between two progress lines of a long release
# Allocations between two young-generation collections (Python's default: 700). See main().
GC_YOUNG_THRESHOLD = 7000


class DeliveryWorker:
    def __init__(self, config: Config, database: Database) -> None:
        self.config = config
        self.db = database
        self.box = SecretBox(config.ENCRYPTION_KEY, config.ENCRYPTION_KEY_PREVIOUS)
        self.pool = gevent.pool.Pool(config.WORKER_MAX_CONCURRENCY)
        self.wake = gevent.event.Event()
        self.release_wake = gevent.event.Event()  # a destination accepts deliveries again
        self.stopping = False
        self.in_flight: dict[object, queue.Job] = {}  # delivery id -> job being sent
        # Fairness: deliveries in flight per destination, at most `cap` each.
        self.busy: Counter = Counter()
        self.cap = config.destination_max_in_flight
        self.circuit = queue.Circuit.from_config(config)
        self._probe_due = 0.0  # monotonic time of the next cool-down step
        self._retry_due: float | None = None  # monotonic time a retry of ours falls due
        self._idle_until = 0.0  # monotonic end of the current idle wait (0: not waiting)
        self._done: list[queue.Finished] = []  # results handed over, not yet written
        self._done_ready = gevent.event.Event()
        # While there is slack (the last claim was not full), this process's claims and
        # finishes take turns: run at once they only competed for the CPUs PostgreSQL
        # shares, and both, and the API's group commits, ended later (end to end at
        # 1,000/s, p50 7.3-8.6 ms against 8.9-10.9 alternating; bench/RESULTS.md). Through a
        # backlog they overlap: taking turns cost a fifth of a process's peak rate. A turn is
        # waited for at most TURN_WAIT: a finish held up by another process's lock never
        # stops claims.
        self._turn = gevent.lock.Semaphore()
        self._backlog = False  # the last claim came back full: more is due
        self.hold = queue.Hold()  # the background hold, with its vacuums
        # Stopping: the flusher writes what is left, without waiting to gather more.
        self._flusher_stop = gevent.event.Event()
        self._flusher: gevent.Greenlet | None = None
        self._claim_min = max(1, min(CLAIM_BATCH, config.WORKER_MAX_CONCURRENCY) // 2)
        self._secrets: dict[tuple[str, str], str] = {}  # (ciphertext, aad) -> plaintext
        self._signing: dict[tuple, tuple[str, ...]] = {}  # (dest, current, previous) -> secrets
        self._timeout = config.DELIVERY_TIMEOUT  # read per delivery: Config's lookup is Python
        # No cookies, no retries, and every connection checked by the SSRF policy.
        self.session = deliver.new_session(
            ssrf.Policy.from_config(config), pool_maxsize=config.WORKER_MAX_CONCURRENCY
        )

    # -- main loop ---------------------------------------------------------------------

    def run(self) -> None:
        """Claim for free slots until stopped; then let in-flight sends finish (bounded)."""
        listener = gevent.spawn(self._listen)
        self._flusher = gevent.spawn(self._flush_loop)
        janitor = gevent.spawn(retention.run_forever, self.config)  # one instance purges
        replayer = gevent.spawn(replay.run_forever, self.config)  # bulk replay jobs
        releaser = gevent.spawn(self._release_loop)
        failures = 0
        try:
            while not self.stopping:
                self._probe_step()  # also when every slot is busy
                free = self.pool.free_count()
                if free == 0:
                    self.pool.wait_available(timeout=1.0)
                    continue
                if self._backlog and free < self._claim_min:
                    # Claim for several slots at once rather than one claim per freed slot
                    # (each claim is a commit): wait a few milliseconds for more to free up.
                    until = time.monotonic() + CLAIM_GATHER
                    while self.pool.free_count() < self._claim_min and time.monotonic() < until:
                        gevent.sleep(0.001)
                    free = self.pool.free_count()
                # Cleared before the claim: a NOTIFY that arrives while we claim wakes the
                # next wait at once instead of being lost.
                self.wake.clear()
                try:
                    limit = min(free, CLAIM_BATCH)
                    claimed = self._db_call(
                        lambda limit=limit: self._in_turn(
                            lambda: queue.claim_fair(
                                self.db, limit, self.config.lease_seconds, self.cap, self.busy
                            )
                        )
                    )
                    jobs = claimed.jobs
                    failures = 0
                except psycopg2.Error as exc:
                    failures += 1
                    delay = min(30.0, 0.5 * 2**failures)
                    log.error("claiming deliveries failed (%s); retrying in %.1fs", exc, delay)
                    self.wake.wait(timeout=delay)
                    continue
                for job in jobs:
                    self.in_flight[job.delivery_id] = job
                    self.busy[job.destination_id] += 1
                    self.pool.spawn(self._process, job)
                # Short but more may be due: some were parked, or left to the cap of a
                # destination that still had room for others, or their event was locked
                # for a moment (claim again at once; after a short pause if that was all).
                more = claimed.parked or (claimed.trimmed and jobs) or claimed.lost
                self._backlog = len(jobs) == limit or bool(more)
                if claimed.lost and not jobs and not claimed.parked:
                    self.wake.wait(timeout=CLAIM_RETRY)
                elif len(jobs) < limit and not more:
                    timeout = self._idle_timeout()
                    self._idle_until = time.monotonic() + timeout
                    self.wake.wait(timeout=timeout)
                    self._idle_until = 0.0
        finally:
            listener.kill(block=False)
            janitor.kill(block=False)
            replayer.kill(block=False)
            releaser.kill(block=False)
            self._drain()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def _probe_step(self) -> None:
        """Every PROBE_STEP: open circuits whose cool-down is over get one probe delivery
        each (every delivery process runs it; the statement never releases two)."""
        now = time.monotonic()
        if now < self._probe_due:
            return
        self._probe_due = now + PROBE_STEP
        window = 2 * self.config.lease_seconds
        try:
            released = self._db_call(lambda: queue.release_probes(self.db, window))
        except psycopg2.Error as exc:  # the claim that follows reports a lasting outage
            log.warning("releasing circuit probes failed (%s); trying again shortly", exc)
            return
        if released:
            log.info("released %d probe deliveries to destinations with an open circuit", released)

    def _release_loop(self) -> None:
        """Destinations whose state changed get their waiting deliveries moved, a chunk per
        destination per statement: held deliveries back in the claim's path when one
        accepts deliveries again (queue.release_held), pending ones out of it when one is
        paused (queue.hold_waiting). At once when woken (a resume's or a pause's NOTIFY, a
        circuit this process closed), else every RELEASE_STEP; again at once while a
        destination has more. One line per destination when its pass ends, and progress
        lines while a long one runs."""
        while not self.stopping:
            self.release_wake.wait(timeout=RELEASE_STEP)
            self.release_wake.clear()
            released: Counter = Counter()
            held: Counter = Counter()
            reported = time.monotonic()
            try:
                while not self.stopping:
                    hold = self._db_call(lambda: self.hold.step(self.db))
                    held.update(hold.counts)
                    if self.hold.vacuumed:
                        log.info(
                            "vacuumed deliveries after %d were held, so that claims skip them:"
                            " %.1fs",
                            *self.hold.vacuumed,
                        )
                    step = self._db_call(lambda: queue.release_held(self.db))
                    released.update(step.counts)
                    if step.total:
                        self.wake.set()  # claim them
                    if not step.more and not hold.more:
                        break
                    if time.monotonic() - reported >= RELEASE_REPORT:
                        reported = time.monotonic()
                        log.info(
                            "moving waiting deliveries: %d held, %d released so far",
                            sum(held.values()),
                            sum(released.values()),
                        )
                    gevent.sleep(0)  # let the claims and sends run between chunks
            except psycopg2.Error as exc:
                log.warning("moving waiting deliveries failed (%s); trying again shortly", exc)
            except Exception:  # the releaser must outlive any failure, as the flusher does
                log.exception("moving waiting deliveries failed; trying again shortly")
            for destination_id, count in held.items():
                log.info(
                    "destination %s is paused: %d waiting deliveries held", destination_id, count
                )
            for destination_id, count in released.items():
                log.info(
                    "destination %s accepts deliveries again: %d held deliveries released",
                    destination_id,
                    count,
                )

    def _idle_timeout(self) -> float:
        """Nothing more is due now: sleep until the poll interval, the next cool-down step,
        or until a retry that this process scheduled falls due, whichever is first (a
        NOTIFY cuts it short)."""
        timeout = min(
            self.config.WORKER_POLL_INTERVAL, max(0.0, self._probe_due - time.monotonic())
        )
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
        if not self.pool.join(timeout=self.config.DRAIN_TIMEOUT):
            log.warning(
                "%d deliveries still in flight after DRAIN_TIMEOUT; cancelling them",
                len(self.pool),
            )
            self.pool.kill(block=True, timeout=5)
            reason = "the delivery process stopped (DRAIN_TIMEOUT) before this attempt finished"
            for job in list(self.in_flight.values()):
                self._hand_over(queue.released(job, reason))
        self.in_flight.clear()
        # Every result handed over is written (or has failed to be) before we return.
        self._flusher_stop.set()
        self._done_ready.set()
        if self._flusher is not None:
            self._flusher.join()
        elif self._done:
            self._flush(self._take_done())

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
                            if any(n.channel == "gethookd_release" for n in conn.notifies):
                                self.release_wake.set()
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
            if result.gone:
                # 410: the destination is disabled as this is recorded, and this delivery
                # waits held with the others (due at once when re-enabled), never dead.
                retry_in = 0.0
            elif not result.ok:
                retry_in = retry.next_delay(
                    job.attempt_number,
                    job.max_attempts,
                    job.backoff,
                    self.config.RETRY_BASE_DELAY,
                    self.config.RETRY_MAX_DELAY,
                )
                if retry_in is not None and result.retry_after is not None:
                    retry_in = retry.with_retry_after(
                        retry_in, result.retry_after, self.config.RETRY_MAX_DELAY
                    )
            self._hand_over(queue.Finished(job, result, retry_in))
        except gevent.GreenletExit:
            raise  # killed at the end of a drain: _drain gives the lease back
        except Exception:
            log.exception("delivery %s failed unexpectedly", job.delivery_id)
            self._done_sending(job)  # its lease expires; it is retried

    def _attempt(self, job: queue.Job) -> deliver.Outcome:
        try:
            request = self._request(job)
        except Exception as exc:  # e.g. a secret that no longer decrypts: a failed attempt
            message = f"cannot build the request: {type(exc).__name__}: {exc}"
            return deliver.Outcome("network_error", None, None, message[:1000], 0)
        return deliver.send(request, self.session)

    def _request(self, job: queue.Job) -> deliver.Request:
        dest = job.destination_id
        auth = None
        key = (dest, job.signing_secret_enc, job.previous_signing_secret_enc)
        secrets = self._signing.get(key)
        if secrets is None:  # decrypted once per destination secret(s), not per delivery
            if len(self._signing) >= 1000:
                self._signing.clear()
            secrets = self._signing[key] = crypto.signing_secrets(
                self.box, dest, job.signing_secret_enc, job.previous_signing_secret_enc
            )
        if job.auth_config_enc:
            auth = json.loads(
                self._decrypt(job.auth_config_enc, aad("destinations.auth_config", dest))
            )
        timeout = self._timeout
        if job.timeout_seconds and job.timeout_seconds > 0:
            timeout = min(float(job.timeout_seconds), timeout)
        return deliver.Request(
            url=job.url,
            body=job.body,
            content_type=job.content_type,
            event_id=job.event_id,
            event_type=job.event_type,
            attempt_number=job.attempt_number,
            timeout=timeout,
            signing_secrets=secrets,
            custom_headers=job.custom_headers,
            auth_config=auth,
        )

    # -- recording results, in batches ---------------------------------------------------

    def _hand_over(self, done: queue.Finished) -> None:
        """The result goes to the flusher; the sending slot is free from now on."""
        self._done_sending(done.job)
        self._done.append(done)
        self._done_ready.set()

    def _done_sending(self, job: queue.Job) -> None:
        if self.in_flight.pop(job.delivery_id, None) is None:
            return
        count = self.busy[job.destination_id]
        if count <= 1:
            del self.busy[job.destination_id]
        else:
            self.busy[job.destination_id] = count - 1
        if count == self.cap:
            self.wake.set()  # its destination was at its cap: due ones may wait for it

    def _take_done(self) -> list[queue.Finished]:
        batch, self._done = self._done, []
        return batch

    def _flush_loop(self) -> None:
        """Write what was handed over, as soon as it is: at a light load a batch of one,
        written at once; under load, everything that queued while the last batch was being
        written, and no more often than every FLUSH_GATHER. Returns when stopping and
        nothing is left.

        A finish costs PostgreSQL and this process a fixed ~1.2 ms besides its ~0.1 ms a
        row (bench/RESULTS.md): through a backlog, larger and fewer batches leave more of
        the CPUs to sending. A slot is free once its result is handed over, so the wait
        delays only the record of an outcome, never a delivery; a process killed meanwhile
        loses those records as it would lose a batch in flight (the leases expire and the
        deliveries are sent again, with the same webhook-id)."""
        last, started = 0, 0.0
        while True:
            if not self._done:
                if self._flusher_stop.is_set():
                    return
                self._done_ready.wait()
                self._done_ready.clear()
                continue
            left = started + FLUSH_GATHER - time.monotonic()
            if last >= FLUSH_GATHER_FROM and left > 0:
                self._flusher_stop.wait(timeout=left)  # set: stop gathering at once
            batch = self._take_done()
            last, started = len(batch), time.monotonic()
            try:
                self._flush(batch)
            except Exception:  # the flusher must outlive any failure; leases cover us
                log.exception("recording delivery results failed")

    def _flush(self, batch: list[queue.Finished]) -> None:
        recorded = self._finish(batch)
        for change in recorded.transitions:
            _log_destination(change)
            if change["circuit_state"] == "closed":
                self.release_wake.set()  # its held deliveries
        lines: list[logs.Line] = []
        attempts = []
        for done, status in zip(batch, recorded.statuses, strict=True):
            if status == "pending" and done.retry_in is not None:
                self._note_retry(done.retry_in)
            line = _transition(done.job, done.result, status, done.retry_in)
            if line is not None:
                lines.append(line)
            attempts.append((done.result, status))
        logs.log_many(log, lines)  # the batch's lines in one write
        metrics.record_attempts(attempts)

    def _finish(self, batch: list[queue.Finished]) -> queue.Recorded:
        """Retry the bookkeeping briefly; if the database stays away the leases cover us.
        A batch the database refuses for another reason is written one by one, so that one
        bad row cannot cost the others their record."""
        try:
            return self._db_call(
                lambda: self._in_turn(lambda: queue.finish_batch(self.db, batch, self.circuit)),
                pauses=(0.2, 1.0, 3.0),
            )
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            log.error(
                "could not record %d deliveries (%s); they are retried after their leases expire",
                len(batch),
                exc,
            )
            return queue.Recorded(["unrecorded"] * len(batch), [])
        except Exception:
            if len(batch) == 1:
                log.exception("could not record delivery %s", batch[0].job.delivery_id)
                return queue.Recorded(["unrecorded"], [])
            log.exception("could not record a batch of %d; writing them one by one", len(batch))
            each = [self._finish([done]) for done in batch]
            return queue.Recorded(
                [s for r in each for s in r.statuses], [t for r in each for t in r.transitions]
            )

    def _decrypt(self, sealed: str, context: str) -> str:
        """Decrypt once per destination secret, not once per delivery: keyed by the sealed
        value itself, so a rotated secret (a new ciphertext) is never served stale."""
        key = (sealed, context)
        plain = self._secrets.get(key)
        if plain is None:
            if len(self._secrets) >= 1000:
                self._secrets.clear()
            plain = self._secrets[key] = self.box.decrypt(sealed, context)
        return plain

    def _in_turn(self, call: Callable[[], T]) -> T:
        """call() once no claim or finish of this process is running (or after TURN_WAIT),
        unless a backlog is being worked through (see _turn)."""
        if self._backlog:
            return call()
        taken = self._turn.acquire(timeout=TURN_WAIT)
        try:
            return call()
        finally:
            if taken:
                self._turn.release()

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


def _transition(
    job: queue.Job, result: deliver.Outcome, status: str | None, retry_in: float | None
) -> logs.Line | None:
    """The log line of one recorded attempt (logs.log_many writes a batch's at once)."""
    what = f"{result.outcome}" + (f" ({result.response_status})" if result.response_status else "")
    head = (
        f"event {job.event_id} delivery {job.delivery_id} attempt "
        f"{job.attempt_number}/{job.max_attempts} -> {what} in {result.latency_ms}ms"
    )
    extra = {
        "fields": {
            "event_id": job.event_id,
            "delivery_id": job.delivery_id,
            "attempt": job.attempt_number,
            "outcome": result.outcome,
        }
    }
    info, warning, error = logging.INFO, logging.WARNING, result.error_message
    if status is None:
        line = warning, "%s; lease lost to another worker, result discarded", (head,)
    elif status == "succeeded":
        line = info, "%s: delivered", (head,)
    elif status == "dead":
        line = warning, "%s: dead-lettered (%s)", (head, error)
    elif status == "pending":
        line = info, "%s: retry in %.1fs (%s)", (head, retry_in, error)
    elif status == "cancelled":
        line = info, "%s: not retried, the event was replayed", (head,)
    elif status == "held":
        line = info, "%s: held, its destination does not take deliveries now (%s)", (head, error)
    else:
        return None  # "unrecorded": the failed batch has its own line
    return (*line, extra)


def _log_destination(change: dict) -> None:
    """One line when a destination's circuit opens or closes, or it is disabled."""
    name = f"destination {change['id']} ({change['name']})"
    fields = {"destination_id": str(change["id"]), "circuit": change["circuit_state"]}
    if change["disabled_at"] and not change["was_disabled"]:
        log.warning(
            "%s disabled: %s; its deliveries wait until it is re-enabled (PATCH active=true)",
            name,
            change["disabled_reason"],
            extra={"fields": fields},
        )
    elif change["circuit_state"] == "open":
        log.warning(
            "%s: circuit open after %d failed attempts in a row; deliveries held until %s",
            name,
            change["consecutive_failures"],
            change["circuit_open_until"],
            extra={"fields": fields},
        )
    elif change["circuit_state"] == "closed":
        log.info(
            "%s: circuit closed, it answered again; held deliveries released",
            name,
            extra={"fields": fields},
        )


def main(config: Config, index: int = 1, ready: Callable[[], None] | None = None) -> int:
    """Entry point of a forked delivery process (already monkey-patched); its exit code."""
    db.make_cooperative()
    database = Database(config.DATABASE_URL, maxconn=config.WORKER_MAX_CONCURRENCY + 2)
    worker = DeliveryWorker(config, database)
    # With hundreds of deliveries in flight, each young-generation collection walked all of
    # their live objects, and every tenth of those was followed by a walk of the older ones:
    # about 4% of the process's CPU (bench/RESULTS.md). Collected a tenth as often, and with
    # what start-up built set aside for good (gc.freeze), a third of that.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    gevent.signal_handler(signal.SIGTERM, worker.stop)
    # SIGINT/SIGQUIT: stop at once; leases of unfinished sends expire and are retried.
    for sig in (signal.SIGINT, signal.SIGQUIT):
        gevent.signal_handler(sig, _exit_now)
    metrics.PROCESSES.labels("worker").set(1)  # live processes are added up per role
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
