"""Autoscaling rules of instance pools: "cpu>70% for 1m", and the decision they make over
a pool's samples (pure: the autoscaler that acts on them is workflows/autoscaler.py).

A rule holds when the pool's value of the metric (the mean over its members at each tick),
averaged over the last WINDOW seconds, meets the comparison, and the samples cover that
window. Only samples taken after the pool last changed size count, so a new member has a
whole window to make a difference before the next decision (a cooldown of one window).
Decisions are made on the monitor's thread from its ticks plus the inventory's samples
table; a resize runs on a worker thread of its own, so sampling never waits for a boot.
Each decision that changes something, and each change of mind, goes to the operations log.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from nbcloud.core.spec import InvalidSpec, check_count

# metric word -> samples column; cpu is % of the flavor's vCPUs, the rest bytes(/s)
METRICS = {"cpu": "cpu", "mem": "mem_used", "disk_rd": "disk_rd", "disk_wr": "disk_wr",
           "net_rx": "net_rx", "net_tx": "net_tx"}
_UNITS = {"": 1.0, "%": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_DURATION = {"s": 1, "m": 60, "h": 3600}
_RULE_RE = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|>|<)\s*(\d+(?:\.\d+)?)\s*(%|[kmg])?\s+for\s+"
                      r"(\d+(?:\.\d+)?)\s*([smh])\s*$", re.IGNORECASE)
RULE_HELP = "METRIC>VALUE for DURATION, like 'cpu>70% for 1m' or 'cpu<20% for 30s'"
COVERAGE = 0.8      # the samples must span this share of a rule's window


@dataclass(frozen=True)
class Rule:
    metric: str        # samples column
    op: str
    threshold: float
    window: float      # seconds
    text: str

    @classmethod
    def parse(cls, text: object, what: str = "rule") -> Rule:
        m = _RULE_RE.fullmatch(text) if isinstance(text, str) else None
        if not m:
            raise InvalidSpec(f"{what} {text!r:.60} is not a rule: use {RULE_HELP}")
        word, op, value, unit, amount, per = m.groups()
        if word.lower() not in METRICS:
            raise InvalidSpec(f"{what} {text!r:.60}: metric {word!r} is not monitored: use "
                              + ", ".join(METRICS))
        metric = METRICS[word.lower()]
        unit = (unit or "").lower()
        if unit == "%" and metric != "cpu":
            raise InvalidSpec(f"{what} {text!r:.60}: only cpu is a percentage")
        window = float(amount) * _DURATION[per.lower()]
        if not 1 <= window <= 86400:
            raise InvalidSpec(f"{what} {text!r:.60}: the duration must be 1 s to 1 day")
        return cls(metric, op, float(value) * _UNITS[unit], window, text.strip())

    def met(self, value: float) -> bool:
        return {">": value > self.threshold, ">=": value >= self.threshold,
                "<": value < self.threshold, "<=": value <= self.threshold}[self.op]

    def mean(self, series: list[tuple[float, float]], now: float) -> float | None:
        """The mean over the last `window` s of (t, value), or None unless the samples
        span at least COVERAGE of the window."""
        recent = [v for t, v in series if now - self.window <= t <= now]
        times = [t for t, _v in series if now - self.window <= t <= now]
        if len(recent) < 2 or times[-1] - times[0] < COVERAGE * self.window:
            return None
        return sum(recent) / len(recent)

    def holds(self, series: list[tuple[float, float]], now: float) -> bool:
        """Whether the window's mean meets the rule (the mean, as cloud alarms use: one
        tick of a starved vCPU on a busy host must not reset a whole window)."""
        value = self.mean(series, now)
        return value is not None and self.met(value)


@dataclass(frozen=True)
class Policy:
    """When a pool grows and shrinks, and its bounds."""
    scale_out: Rule | None
    scale_in: Rule | None
    min: int
    max: int

    @classmethod
    def parse(cls, scale_out: str | None, scale_in: str | None, min_size: object = None,
              max_size: object = None) -> Policy | None:
        """A policy from the command-line words; None when none was given."""
        if scale_out is None and scale_in is None and min_size is None and max_size is None:
            return None
        out = Rule.parse(scale_out, "--scale-out") if scale_out is not None else None
        inn = Rule.parse(scale_in, "--scale-in") if scale_in is not None else None
        if out is not None and out.op not in (">", ">="):
            raise InvalidSpec(f"--scale-out {out.text!r} must compare with > or >= (grow "
                              "when the load is high)")
        if inn is not None and inn.op not in ("<", "<="):
            raise InvalidSpec(f"--scale-in {inn.text!r} must compare with < or <= (shrink "
                              "when the load is low)")
        lo = check_count(min_size if min_size is not None else 1, "--min")
        hi = check_count(max_size if max_size is not None else max(lo, 1), "--max")
        if lo > hi:
            raise InvalidSpec(f"--min {lo} is more than --max {hi}: the smallest size "
                              "must not exceed the largest")
        if out is not None and inn is not None and out.metric == inn.metric and \
                inn.threshold >= out.threshold:
            raise InvalidSpec(f"--scale-in threshold {inn.threshold:g} is not below "
                              f"--scale-out threshold {out.threshold:g}: the pool would "
                              "flap between sizes")
        return cls(out, inn, lo, hi)

    def to_json(self) -> dict:
        return {"scale_out": self.scale_out.text if self.scale_out else None,
                "scale_in": self.scale_in.text if self.scale_in else None,
                "min": self.min, "max": self.max}

    @classmethod
    def from_json(cls, d: dict | None) -> Policy | None:
        if not d:
            return None
        return cls.parse(d.get("scale_out"), d.get("scale_in"), d.get("min"), d.get("max"))

    def describe(self) -> str:
        parts = [f"out when {self.scale_out.text}" if self.scale_out else "",
                 f"in when {self.scale_in.text}" if self.scale_in else "",
                 f"size {self.min}..{self.max}"]
        return ", ".join(p for p in parts if p)


def pool_series(rows_by_member: dict[str, list[dict]], metric: str,
                since: float = 0.0) -> list[tuple[float, float]]:
    """(t, mean over members) per tick from sample rows, oldest first (one monitor tick
    stamps all its samples with one time)."""
    ticks: dict[float, list[float]] = {}
    for rows in rows_by_member.values():
        for row in rows:
            value = row.get(metric)
            if value is not None and row["t"] >= since:
                ticks.setdefault(row["t"], []).append(value)
    return [(t, sum(v) / len(v)) for t, v in sorted(ticks.items())]


@dataclass(frozen=True)
class Decision:
    action: str        # "out", "in" or "hold"
    size: int          # the size to go to
    reason: str


def decide(policy: Policy, size: int, series: list[tuple[float, float]],
           now: float) -> Decision:
    """What a pool of `size` members should do, given its (t, value) series."""
    if size < policy.min:
        return Decision("out", policy.min, f"size {size} is below --min {policy.min}")
    if size > policy.max:
        return Decision("in", policy.max, f"size {size} is above --max {policy.max}")
    rule = policy.scale_out or policy.scale_in
    mean = rule.mean(series, now) if rule else None
    last = f" (mean {mean:.1f})" if mean is not None else ""
    if policy.scale_out and policy.scale_out.holds(series, now):
        if size < policy.max:
            return Decision("out", size + 1, f"{policy.scale_out.text}{last}")
        return Decision("hold", size, f"{policy.scale_out.text}{last}, but at --max "
                                      f"{policy.max}")
    if policy.scale_in and policy.scale_in.holds(series, now):
        if size > policy.min:
            return Decision("in", size - 1, f"{policy.scale_in.text}{last}")
        return Decision("hold", size, f"{policy.scale_in.text}{last}, but at --min "
                                      f"{policy.min}")
    return Decision("hold", size, f"no rule holds{last}")
