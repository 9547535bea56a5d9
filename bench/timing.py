"""What the in-process benchmarks share: the median of repeated calls, after a warm-up."""
from __future__ import annotations

import statistics
import time


def median_ms(fn, runs: int) -> float:
    """Median wall time of `fn()` over `runs` calls, in ms; one warm-up call not counted."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)
