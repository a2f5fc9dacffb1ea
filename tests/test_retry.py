"""The retry policy: pure arithmetic, so every rule is checked exactly."""

import random

import pytest

from gethookd.retry import next_delay


class Fixed(random.Random):
    """A random source whose uniform() always lands at one point of its range."""

    def __init__(self, at: float) -> None:
        super().__init__()
        self.at = at

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.at


def delays(backoff: str, attempts: int, base: float = 1.0, cap: float = 1000.0, at: float = 1.0):
    return [next_delay(n, attempts + 1, backoff, base, cap, Fixed(at)) for n in range(1, attempts)]


def test_exponential_doubles_from_the_base():
    assert delays("exponential", 6) == [1, 2, 4, 8, 16]


def test_linear_grows_by_the_base():
    assert delays("linear", 5, base=3) == [3, 6, 9, 12]


def test_fixed_waits_the_base_every_time():
    assert delays("fixed", 5, base=7) == [7, 7, 7, 7]


def test_unknown_backoff_counts_as_exponential():
    assert delays("fibonacci", 4) == delays("exponential", 4)


@pytest.mark.parametrize("backoff,base", [("exponential", 5), ("linear", 5), ("fixed", 90)])
def test_delay_never_exceeds_the_cap(backoff, base):
    got = delays(backoff, 60, base=base, cap=60)
    assert max(got) == 60
    assert all(d <= 60 for d in got)


def test_large_attempt_numbers_do_not_overflow():
    assert next_delay(99, 100, "exponential", 10.0, 3600.0, Fixed(1.0)) == 3600.0
    assert next_delay(10_000, 10_001, "exponential", 10.0, 3600.0, Fixed(1.0)) == 3600.0


@pytest.mark.parametrize("backoff", ["exponential", "linear", "fixed"])
def test_jitter_stays_between_half_and_the_whole_delay(backoff):
    rng = random.Random(1234)
    for attempt in range(1, 12):
        undelayed = next_delay(attempt, 100, backoff, 2.0, 300.0, Fixed(1.0))
        samples = [next_delay(attempt, 100, backoff, 2.0, 300.0, rng) for _ in range(300)]
        assert all(undelayed / 2 <= s <= undelayed for s in samples), (attempt, undelayed)
        # The jitter really spreads them: both halves of the range are used.
        assert min(samples) < undelayed * 0.6 and max(samples) > undelayed * 0.9


def test_jitter_bounds_are_reached_at_the_extremes():
    assert next_delay(3, 10, "exponential", 1.0, 100.0, Fixed(0.0)) == 2.0
    assert next_delay(3, 10, "exponential", 1.0, 100.0, Fixed(1.0)) == 4.0


def test_default_random_source_is_used_when_none_is_given():
    got = {next_delay(2, 5, "fixed", 10.0, 100.0) for _ in range(50)}
    assert all(5.0 <= d <= 10.0 for d in got)
    assert len(got) > 1


@pytest.mark.parametrize("attempt,max_attempts", [(1, 1), (3, 3), (5, 3), (100, 100)])
def test_none_once_the_last_allowed_attempt_has_failed(attempt, max_attempts):
    assert next_delay(attempt, max_attempts, "exponential", 1.0, 60.0) is None


def test_the_attempt_before_the_last_still_gets_a_delay():
    assert next_delay(2, 3, "exponential", 1.0, 60.0, Fixed(1.0)) == 2.0
