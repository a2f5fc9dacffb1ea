"""Retry policy: after a failed attempt, when to try again, or give up. Pure: no I/O."""

from __future__ import annotations

import random


def next_delay(
    attempt_number: int,
    max_attempts: int,
    backoff: str,
    base: float,
    cap: float,
    rand: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after attempt `attempt_number` (1-based) failed, or
    None when that was the last one allowed and the delivery is dead-lettered.

    Before jitter: fixed waits `base`, linear `base * n`, exponential `base * 2**(n-1)`,
    each at most `cap` (an unknown backoff counts as exponential). Jitter ("equal
    jitter": half fixed, half random) then gives a delay in [d/2, d], which spreads the
    retries of events that failed together, so a recovering destination is not hit by a
    wave.
    """
    if attempt_number >= max_attempts:
        return None
    n = max(1, attempt_number)
    if backoff == "fixed":
        delay = base
    elif backoff == "linear":
        delay = base * n
    else:
        delay = base * 2.0 ** min(n - 1, 64)  # bounded exponent: no float overflow
    delay = max(0.0, min(cap, delay))
    return delay / 2 + (rand or random).uniform(0, delay / 2)


def with_retry_after(delay: float, retry_after: float, cap: float) -> float:
    """The destination asked us to wait (Retry-After on a 429 or 503): the next attempt
    comes no sooner than it asked, and no later than `cap` (RETRY_MAX_DELAY)."""
    return min(cap, max(delay, retry_after))
