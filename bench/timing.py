"""What the benchmarks share: the median of repeated in-process calls, the summary of a
list of timings and its table, one nbcloud create -> SSH-ready round, and where results go."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def save(name: str, result: dict, indent: int = 1) -> Path:
    """Write `result` to bench/results/NAME.json (report.py folds them into the tables)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=indent) + ("\n" if indent > 1 else ""))
    return path


def print_spread(rows, width: int = 10, unit: str = "s") -> None:
    """A median / min / max table of `rows` (label, summary()) under a header."""
    print(f"  {'':{width}} {'median':>8} {'min':>8} {'max':>8}")
    for label, s in rows:
        print(f"  {label:{width}} {s['median']:8.2f} {s['min']:8.2f} {s['max']:8.2f}  {unit}")


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
