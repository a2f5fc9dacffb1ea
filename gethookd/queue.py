"""The delivery queue in PostgreSQL: claim with a lease, record outcomes fenced by it.

Every function here runs one short transaction and has committed when it returns, so
no transaction is ever open while a request is on the wire. Outcomes are recorded in
batches (finish_many); hold/release move a destination's waiting deliveries out of the
claim's path and back, inside the caller's transaction.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from gethookd.db import Cursor, Database, json_rows, plain_array
from gethookd.deliver import Outcome, cap_text

OK_OR_RELEASED = ("success", "cancelled")  # outcomes that are not a destination's failure


class Job(NamedTuple):
    """One claimed delivery: everything sending needs, and the lease that fences it. Its
    ids are text, as the claim returns them (see claim_deliveries). A named tuple, made
    from the claim's row as it is: a frozen dataclass of these 19 fields cost 5 us to make
    (each field set through object.__setattr__), about 2% of a delivery process's CPU."""

    delivery_id: str
    lease_token: str
    attempt_id: str
    attempt_number: int
    max_attempts: int
    backoff: str
    event_id: str
    account_id: str
    event_type: str | None
    direction: str
    body: bytes
    content_type: str | None
    destination_id: str
    url: str
    timeout_seconds: int
    signing_secret_enc: str | None
    # The replaced secret while its rotation grace lasts (the claim returns it only then).
    previous_signing_secret_enc: str | None
    auth_config_enc: str | None
    custom_headers: dict | None


_BODY = Job._fields.index("body")  # the claim's bytea arrives as a memoryview


class Finished(NamedTuple):
    """One attempt's result, ready to be recorded: retry_in is None for a success or a
    final failure (dead letter), else the seconds until the next attempt."""

    job: Job
    result: Outcome
    retry_in: float | None

    @property
    def status(self) -> str:
        if self.result.ok:
            return "succeeded"
        return "dead" if self.retry_in is None else "pending"


@dataclass(frozen=True)
class Circuit:
    """When a destination's circuit opens and when it is disabled (see finish_deliveries)."""

    threshold: int = 10  # consecutive failed attempts that open the circuit
    cooldown: float = 30.0  # seconds open before the first probe; doubles per re-open
    cooldown_max: float = 900.0
    disable_after: float = 5 * 86400.0  # failing continuously this long: disabled

    @classmethod
    def off(cls) -> Circuit:
        """Health is recorded, but no run of failures opens a circuit or disables (410
        Gone still disables): for callers that do not pass the settings."""
        return cls(threshold=2**31 - 1, disable_after=100 * 365 * 86400.0)

    @classmethod
    def from_config(cls, config: Any) -> Circuit:
        return cls(
            config.CIRCUIT_FAILURE_THRESHOLD,
            config.CIRCUIT_COOLDOWN,
            max(config.CIRCUIT_COOLDOWN, config.CIRCUIT_COOLDOWN_MAX),
            config.DESTINATION_DISABLE_AFTER,
        )


@dataclass(frozen=True)
class Claimed:
    """What a claim took, and why it may have come back short although more is due:
    `parked` due deliveries were moved to 'held' (their destination does not accept
    deliveries now), `trimmed` were left because their destination reached its cap,
    `lost` were chosen but their event was locked (a flusher or a replay had it)."""

    jobs: list[Job]
    parked: int = 0
    trimmed: int = 0
    lost: int = 0


def claim(
    db: Database,
    limit: int,
    lease_seconds: float,
    cap: int = 1_000_000,
    busy: Mapping[Any, int] | None = None,
) -> list[Job]:
    """Lease up to `limit` due deliveries (or ones whose lease expired) and open an attempt
    for each; an expired lease's unfinished attempt is recorded as cancelled."""
    return claim_fair(db, limit, lease_seconds, cap, busy).jobs


# The claim and the finish are prepared (planning them cost more than running them for a
# small batch), and their generic plans are kept while the tables grow, for a while (see
# db.Prepared). Made while the tables were nearly empty, those plans scanned
# deliveries and events instead of looking rows up by key: once 60,000 rows had arrived, a
# claim of ten touched 123,157 buffers, and a finish of ten 1,028, scanning every event
# (tests/test_queue.py; with the scans ruled out, 511 and under 700). Ruling scans out
# is not enough on tables analyzed empty (a whole index read instead): the statements
# also reach every table by key in ways no plan can change (sql/queue.sql, "Plans that
# cannot go wrong").
# Nested loops are ruled out too: a table joined to a batch (a CTE, which the planner
# takes for one row) is bounded by the batch's keys (`= ANY`), and a nested loop would scan
# it again for every row of the batch (a finish of 50 read 1,275 attempts for 50); hashed
# or merged, it is read once. A LATERAL lookup per row is a nested loop still: the only
# plan there is.
PLAN_BY_KEY = (
    "SET LOCAL enable_seqscan = off;\nSET LOCAL enable_bitmapscan = off;\n"
    "SET LOCAL enable_nestloop = off;\n"
)
# And those generic plans are always what runs. The plan cache keeps to a generic plan only
# while its estimate is no higher than a plan made for the call's values: for a finish of
# one to a few deliveries over a history of some thousand events it judged otherwise, and
# planned each call anew, 2.3 ms of PostgreSQL's CPU a finish, twice what running it costs
# (bench/bookkeeping.py --batch 1: 3.6 -> 1.7 ms a delivery). From 50 up it already chose
# the generic plans.
PLAN_GENERIC = "SET LOCAL plan_cache_mode = force_generic_plan;\n"
QUEUE_PLANS = PLAN_BY_KEY + PLAN_GENERIC
# A claim is a lease, and losing one is safe: if the server crashed before the claim's
# commit reached the disk, its deliveries are back as they were, pending and due, and are
# claimed again (sent again with the same webhook-id, as after any crash mid-send). So the
# claim does not wait for its commit to be flushed, which takes that wait off the path from
# ingest to delivery. Whatever commits after it (the finish, synchronously) flushes the
# claim's WAL first, so a recorded outcome never outlives its claim.
CLAIM_COMMIT = "SET LOCAL synchronous_commit = off;\n"


# The error of an attempt whose lease expired: written by the claim that takes it over.
ABANDONED = (
    "the delivery process stopped before this attempt finished; retried after its lease expired"
)


def claim_fair(
    db: Database,
    limit: int,
    lease_seconds: float,
    cap: int = 1_000_000,
    busy: Mapping[Any, int] | None = None,
) -> Claimed:
    """claim(), fair: no destination ends up with more than `cap` in flight, counting the
    caller's `busy` (destination id -> deliveries it has in flight). One statement, one
    round trip."""
    if limit <= 0:
        return Claimed([])
    with _single_statement(db) as cur:
        params = claim_params(limit, lease_seconds, cap, busy)
        names, rows = cur.prepared_tuples(
            "claim_deliveries", params, before=QUEUE_PLANS + CLAIM_COMMIT
        )
    # parked, trimmed, lost; then the job's columns, ending with its order (sorted by it).
    if tuple(names[3:-1]) != Job._fields:
        raise RuntimeError(f"claim_deliveries returns {names[3:-1]}, not Job's fields")
    jobs = []
    parked = trimmed = lost = 0
    for row in rows:
        parked, trimmed, lost = row[:3]
        if row[3] is None:
            continue
        job = list(row[3:-1])
        job[_BODY] = bytes(job[_BODY])
        jobs.append(Job._make(job))
    return Claimed(jobs, parked, trimmed, lost)


def claim_params(
    limit: int,
    lease_seconds: float,
    cap: int = 1_000_000,
    busy: Mapping[Any, int] | None = None,
) -> dict[str, Any]:
    """The parameters of claim_deliveries (also for EXPLAIN in tests and benchmarks)."""
    busy = {k: n for k, n in (busy or {}).items() if n > 0}
    return {
        "limit": limit,
        "lease_seconds": lease_seconds,
        "cap": cap,
        # Candidates read per branch: twice the limit leaves room for what the allowance
        # trims; destinations at their cap are filtered out before this limit applies.
        "scan": limit * 2,
        "busy_destinations": plain_array(busy),
        "busy_counts": plain_array(busy.values()),
        "capped": plain_array(k for k, n in busy.items() if n >= cap),
        # Said apart, so that a prepared (generic) plan does not take `<> ALL(capped)` to
        # keep one row in a thousand and sort every due delivery instead of walking the
        # due index.
        "uncapped": not any(n >= cap for n in busy.values()),
        "abandoned": ABANDONED,
    }


def release_probes(db: Database, probe_window: float) -> int:
    """Cool-downs that are over: release one probe delivery per such destination (and wake
    the delivery processes). How many. Idempotent; safe in every process at once."""
    with _single_statement(db) as cur:
        rows = cur.all("release_circuit_probes", {"probe_window": probe_window})
        if rows:
            cur.run("notify_deliveries")
    return len(rows)


def finish_many(
    db: Database, batch: list[Finished], circuit: Circuit | None = None
) -> list[str | None]:
    """Record a batch of attempts (see finish_batch): each delivery's new status."""
    return finish_batch(db, batch, circuit).statuses


@dataclass(frozen=True)
class Recorded:
    """What finish_batch wrote: per delivery its new status ('succeeded', 'pending' for a
    retry, 'held' for a retry whose destination stopped accepting, 'dead', or 'cancelled'
    when the event was replayed meanwhile; None if its lease was lost and nothing of it
    was changed), and the destinations whose circuit or disabled state changed."""

    statuses: list[str | None]
    transitions: list[dict]


def finish_batch(db: Database, batch: list[Finished], circuit: Circuit | None = None) -> Recorded:
    """Record a batch of attempts in one transaction (one round trip), and the health of
    their destinations (circuit, failure run, disabled). Notifies the delivery processes
    if a retry is due at once."""
    if not batch:
        return Recorded([], [])
    params = finish_params(batch, circuit)
    with _single_statement(db) as cur:
        # Tuples, not dicts: RealDictCursor built each row in Python (as for the claim).
        names, rows = cur.prepared_tuples("finish_deliveries", params, before=QUEUE_PLANS)
    if names != ["delivery_id", "status", "transitions"]:
        raise RuntimeError(f"finish_deliveries returns {names}")
    got = {delivery_id: status for delivery_id, status, _ in rows}  # ids as text, as the jobs'
    statuses = [got.get(f.job.delivery_id) for f in batch]
    transitions = (rows[0][2] if rows else None) or []
    if any(s == "pending" and not f.retry_in for s, f in zip(statuses, batch, strict=True)):
        with _single_statement(db) as cur:
            cur.run("notify_deliveries")  # due at once: let any delivery process take it
    return Recorded(statuses, transitions)


def finish_params(batch: list[Finished], circuit: Circuit | None = None) -> dict[str, Any]:
    """The parameters of finish_deliveries (also for EXPLAIN in tests and benchmarks)."""
    circuit = circuit or Circuit.off()
    return {
        "threshold": circuit.threshold,
        "cooldown": circuit.cooldown,
        "cooldown_max": circuit.cooldown_max,
        "disable_after": circuit.disable_after,
        # The jobs' ids are text, as the claim returns them. Lists go as one array literal
        # each and the rows as one JSON text: as Python lists, their parameters cost more
        # than the rest of a small finish (db.json_rows).
        "destination_ids": plain_array(sorted({f.job.destination_id for f in batch})),
        "failing_ids": plain_array(
            sorted({f.job.destination_id for f in batch if f.result.outcome not in OK_OR_RELEASED})
        ),
        "event_ids": plain_array(sorted({f.job.event_id for f in batch})),
        "delivery_ids": plain_array([f.job.delivery_id for f in batch]),
        "rows": json_rows(
            [
                {
                    "delivery_id": f.job.delivery_id,
                    "lease_token": f.job.lease_token,
                    "attempt_id": f.job.attempt_id,
                    "status": f.status,
                    "retry_in": max(0.0, f.retry_in or 0.0),
                    "outcome": f.result.outcome,
                    "response_status": f.result.response_status,
                    "response_body": cap_text(f.result.response_body),
                    "error_message": cap_text(f.result.error_message),
                    "latency_ms": f.result.latency_ms,
                    "gone": f.result.gone,
                }
                for f in batch
            ]
        ),
    }


def finish(db: Database, job: Job, result: Outcome, retry_in: float | None) -> str | None:
    """Record one attempt (see finish_many); None if the lease was lost."""
    return finish_many(db, [Finished(job, result, retry_in)])[0]


def release(db: Database, job: Job, reason: str, latency_ms: int = 0) -> str | None:
    """Give a lease back before it expires (the process is stopping mid-send): the attempt
    is recorded as cancelled and the delivery is due again at once. None if the lease was
    already gone (the attempt was recorded after all, or another worker took it over)."""
    return finish(db, job, released(job, reason, latency_ms).result, retry_in=0.0)


def released(job: Job, reason: str, latency_ms: int = 0) -> Finished:
    """The result that gives a lease back: a cancelled attempt, due again at once."""
    return Finished(job, Outcome("cancelled", None, None, reason, latency_ms), 0.0)


def resume_destination(cur: Cursor) -> None:
    """In the transaction that made a destination accept deliveries again (its
    releasing_since set): wake the delivery processes, which release its held deliveries
    in the background."""
    cur.run("notify_release")


def hold_destination(cur: Cursor, destination_id: Any) -> None:
    """In the transaction that made a destination stop accepting deliveries (paused): flag
    it, and wake the delivery processes, which move its waiting deliveries out of the
    claim's path ('held') in the background."""
    cur.run("flag_destination_hold", {"destination_id": destination_id})
    cur.run("notify_release")


# Deliveries moved per destination per statement, destinations looked at per statement,
# and how long a destination stays flagged after it accepts again (see release_held_chunks
# and hold_waiting_chunks in sql/queue.sql).
RELEASE_CHUNK = 1000
RELEASE_DESTINATIONS = 100
RELEASE_GRACE = 30.0


@dataclass(frozen=True)
class Moved:
    """One step of the background release (or hold): how many deliveries were made pending
    (or held), per destination, and whether a destination has more (run the step again at
    once)."""

    counts: dict[Any, int]
    more: bool

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def release_held(
    db: Database,
    chunk: int = RELEASE_CHUNK,
    destinations: int = RELEASE_DESTINATIONS,
    grace: float = RELEASE_GRACE,
) -> Moved:
    """Destinations that accept deliveries again get their held deliveries back in the
    claim's path, a chunk each per call; the delivery processes are woken if any was
    released. Safe in every process at once."""
    params = {"chunk": chunk, "destinations": destinations, "grace": grace}
    with _single_statement(db) as cur:
        rows = cur.all("release_held_chunks", params)
        if rows and rows[0]["total"]:
            cur.run("notify_deliveries")
    return _moved(rows, "released")


def hold_waiting(
    db: Database, chunk: int = RELEASE_CHUNK, destinations: int = RELEASE_DESTINATIONS
) -> Moved:
    """Paused destinations get their waiting deliveries out of the claim's path, a chunk
    each per call. Safe in every process at once."""
    with _single_statement(db) as cur:
        rows = cur.all("hold_waiting_chunks", {"chunk": chunk, "destinations": destinations})
    return _moved(rows, "held")


# A hold leaves a dead entry in the claim's index (deliveries_due) for every delivery it
# holds, at the front of the claim's scan (held deliveries are the oldest due), and every
# claim reads past them until the table is vacuumed: after 995,000 held, claims of 50 took
# ~12 ms instead of ~3 (and the first one 250 ms) until a VACUUM, 1.1 s of it, removed them;
# autovacuum gets there minutes later (bench/RESULTS.md). So a delivery process that has held
# HOLD_VACUUM_AFTER since its last vacuum vacuums the table when its pass ends, and every ten
# times that many during a long pass.
HOLD_VACUUM_AFTER = 20_000


def vacuum_due(held_since_vacuum: int, more: bool) -> bool:
    """Whether a hold pass that has held `held_since_vacuum` deliveries since its last
    vacuum, with `more` to hold, vacuums the table now."""
    after = HOLD_VACUUM_AFTER
    return held_since_vacuum >= after and (not more or held_since_vacuum >= 10 * after)


def vacuum_deliveries(db: Database) -> None:
    """VACUUM the deliveries table (see HOLD_VACUUM_AFTER); a vacuum already running is left
    to finish it. A role that does not own the table gets a warning from the server, no
    error: autovacuum still gets there."""
    with _single_statement(db) as cur:
        cur.run("vacuum_deliveries")


class Hold:
    """The background hold as a delivery process runs it: a chunk per step (hold_waiting),
    then a VACUUM of deliveries when vacuum_due says so."""

    def __init__(self) -> None:
        self.since_vacuum = 0  # deliveries held since this process last vacuumed
        # The last step's vacuum, if it ran one: (deliveries held before it, seconds it took).
        self.vacuumed: tuple[int, float] | None = None

    def step(self, db: Database) -> Moved:
        self.vacuumed = None
        moved = hold_waiting(db)
        self.since_vacuum += moved.total
        if vacuum_due(self.since_vacuum, moved.more):
            # Counted as done before it runs: one that fails (a statement_timeout, say) is
            # reported by the caller once, not tried again at every step.
            held, self.since_vacuum = self.since_vacuum, 0
            started = time.monotonic()
            vacuum_deliveries(db)
            self.vacuumed = (held, time.monotonic() - started)
        return moved


def _moved(rows: list[dict], column: str) -> Moved:
    return Moved(
        {r["destination_id"]: r[column] for r in rows if r[column]}, any(r["more"] for r in rows)
    )


@contextlib.contextmanager
def _single_statement(db: Database) -> Iterator[Cursor]:
    """A cursor whose one execute() is its own transaction (several statements sent in one
    string run as one implicit transaction block): no BEGIN/COMMIT round trips."""
    with db.transaction() as cur:
        conn = cur.raw.connection
        conn.autocommit = True
        try:
            yield cur
        finally:
            if not conn.closed:
                conn.autocommit = False
