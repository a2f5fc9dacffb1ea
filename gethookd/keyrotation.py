"""Re-encrypting every secret at rest under a new ENCRYPTION_KEY while the gateway runs.

Small batches, each its own transaction, rows locked FOR UPDATE SKIP LOCKED so a live
request touching a destination or source never waits long. Progress lives in the data
itself: a value sealed with the current key names it (`v1:<key id>:`), so a rotation
stopped anywhere resumes by looking for the values that do not. Plaintext only ever
exists in memory here; nothing is logged but table, column and row id.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from gethookd.crypto import SecretBox, aad
from gethookd.db import Database

log = logging.getLogger(__name__)

# table -> its sealed columns (the AAD names each without the `_enc` suffix)
SEALED = {
    "destinations": ("signing_secret_enc", "previous_signing_secret_enc", "auth_config_enc"),
    "sources": ("verification_config_enc",),
}
_FIRST = uuid.UUID(int=0)
MAX_PASSES = 20


@dataclass
class Result:
    rewritten: int = 0
    unreadable: set[tuple[str, str, str]] = field(default_factory=set)  # table, column, id
    remaining: int = 0


def count_stale(database: Database, box: SecretBox) -> dict[str, int]:
    """Sealed values per table not yet under the current key."""
    with database.transaction() as cur:
        row = cur.one("rotation_count_stale", {"current": box.current_prefix + "%"})
    return {table: int(row[table]) for table in SEALED}


def _reseal(box: SecretBox, table: str, row: dict, result: Result) -> tuple[dict, int]:
    changed = dict(row)
    count = 0
    for column in SEALED[table]:
        sealed = row[column]
        if sealed is None or box.is_current(sealed):
            continue
        context = aad(f"{table}.{column.removesuffix('_enc')}", row["id"])
        try:
            plain = box.decrypt(sealed, context)
        except Exception:  # wrong key, damaged value: kept as it is, reported
            if (table, column, str(row["id"])) not in result.unreadable:
                log.error("cannot decrypt %s.%s of %s; left as it is", table, column, row["id"])
            result.unreadable.add((table, column, str(row["id"])))
            continue
        changed[column] = box.encrypt(plain, context)
        count += 1
    return changed, count


def _pass(
    database: Database,
    box: SecretBox,
    table: str,
    batch_size: int,
    pause: float,
    result: Result,
    progress: Callable[[int], None],
) -> int:
    """One walk over the table in id order; returns how many values it re-sealed."""
    after, done = _FIRST, 0
    params = {"current": box.current_prefix + "%", "limit": batch_size}
    while True:
        with database.transaction() as cur:
            rows = cur.all(f"rotation_{table}_batch", {**params, "after": after})
            batch = 0
            for row in rows:
                changed, count = _reseal(box, table, row, result)
                if count:
                    cur.run(f"rotation_{table}_update", changed)
                    batch += count
        if not rows:
            return done
        after = rows[-1]["id"]
        done += batch
        result.rewritten += batch
        progress(batch)
        if pause:
            time.sleep(pause)


def rotate(
    database: Database,
    box: SecretBox,
    batch_size: int = 100,
    pause: float = 0.0,
    progress: Callable[[int], None] = lambda n: None,
) -> Result:
    """Re-seal every value not under box's current key; repeat the walk while rows were
    skipped because a live request held them."""
    result = Result()
    for _ in range(MAX_PASSES):
        for table in SEALED:
            _pass(database, box, table, batch_size, pause, result, progress)
        result.remaining = sum(count_stale(database, box).values())
        if result.remaining <= len(result.unreadable):
            break
        time.sleep(0.2)  # rows locked by live traffic: try them again shortly
    return result
