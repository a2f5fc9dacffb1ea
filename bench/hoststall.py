"""How steady this machine's CPU is: the same small piece of work, timed over and over.

On a shared virtual machine the host can slow a virtual CPU down for tens of milliseconds
at a time. A benchmark's tail (its p99) then measures the host, not the code, so the
benchmarks print this probe's reading next to their figures. The probe runs a fixed loop
of about half a millisecond every 10 ms (5% of one core) and reports how often, how much
and for how long that loop ran slower than its median.

    python bench/hoststall.py                 # 10 s
    python bench/hoststall.py --seconds 30

A quiet host reads "no slow-downs"; the 2-core VM of bench/RESULTS.md read, with nothing
else running, clusters every ~1.5-2 s in which the loop took 8-12 times its median.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass

SLOW = 4.0  # a run of the loop this many times its median is a slow-down
CLUSTER_GAP = 0.25  # seconds: slow-downs closer than this are one cluster
PERIOD = 0.010  # seconds between two runs of the loop
WORK = 4000  # additions per run: about 0.5 ms of CPU on the reference VM


@dataclass
class Reading:
    seconds: float
    runs: int
    median_ms: float
    worst: float  # the slowest run, in medians
    slow_runs: int  # runs over SLOW medians
    clusters: list[float]  # start of each cluster of slow runs, seconds into the probe

    def summary(self) -> str:
        if not self.clusters:
            return (
                f"host: no slow-downs in {self.seconds:.0f} s (a {self.median_ms:.2f} ms "
                f"loop, worst {self.worst:.1f}x its median)"
            )
        gaps = [b - a for a, b in itertools.pairwise(self.clusters)]
        every = f", every ~{sorted(gaps)[len(gaps) // 2]:.1f} s" if gaps else ""
        return (
            f"host: {len(self.clusters)} cluster(s) of slow-downs in {self.seconds:.0f} s"
            f"{every}; a {self.median_ms:.2f} ms loop ran up to {self.worst:.1f}x slower "
            f"({self.slow_runs} of {self.runs} runs over {SLOW:g}x)"
        )


def _run_once() -> float:
    started = time.perf_counter()
    total = 0
    for i in range(WORK):
        total += i
    return time.perf_counter() - started


def probe(seconds: float) -> Reading:
    """Time the loop every PERIOD for `seconds` (this process sleeps between runs)."""
    samples: list[tuple[float, float]] = []
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        samples.append((now - start, _run_once()))
        time.sleep(PERIOD)
    durations = sorted(d for _, d in samples)
    median = durations[len(durations) // 2]
    slow = [t for t, d in samples if d > SLOW * median]
    clusters: list[float] = []
    last = None
    for t in slow:
        if last is None or t - last > CLUSTER_GAP:
            clusters.append(t)
        last = t
    return Reading(
        seconds=seconds,
        runs=len(samples),
        median_ms=median * 1000,
        worst=durations[-1] / median,
        slow_runs=len(slow),
        clusters=clusters,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to probe (10)")
    args = parser.parse_args(argv)
    reading = probe(args.seconds)
    print(reading.summary())
    for t in reading.clusters:
        print(f"  slow-downs from {t:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
