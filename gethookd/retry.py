"""Retry policy: after a failed attempt, when to try again, or give up."""

from __future__ import annotations

import random

BACKOFFS = ("exponential", "linear", "fixed")


def next_delay(
    attempt_number: int,
    max_attempts: int,
    backoff: str,
    base: float,
    cap: float,
    rand: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt, or None when the delivery is dead-lettered.

    Jitter ("equal jitter": half fixed, half random) spreads retries of events
    that failed together, so a recovering destination is not hit by a wave.
    """
    if attempt_number >= max_attempts:
        return None
    if backoff == "fixed":
        delay = base
    elif backoff == "linear":
        delay = base * attempt_number
    else:
        delay = base * 2 ** (attempt_number - 1)
    delay = min(cap, delay)
    return delay / 2 + (rand or random).uniform(0, delay / 2)
