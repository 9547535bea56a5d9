"""What the benchmarks share: the median of repeated in-process calls, the summary of a
list of timings, and one nbcloud create -> SSH-ready round."""
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


def summary(times: list[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "runs": [round(t, 3) for t in times]}


def create_to_ssh(cloud, name: str, **create_args) -> float:
    """Seconds from `instances.create(name, **create_args)` to `true` run over SSH with the
    pinned key. A leftover of that name goes first; the instance goes after, whatever
    happened."""
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    start = time.perf_counter()
    try:
        cloud.instances.create(name, **create_args).ssh("true")
        return time.perf_counter() - start
    finally:
        if cloud.provider.exists(name):
            cloud.instances.delete(name)
