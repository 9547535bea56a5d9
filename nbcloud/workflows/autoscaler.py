"""The autoscaler of instance pools: evaluates every pool's policy (core/scaling.py) at
each monitor tick and resizes the pools whose rule holds.

Decisions are made on the monitor's thread from its ticks plus the inventory's samples
table; a resize runs on a worker thread of its own, so sampling never waits for a boot.
Each decision that changes something, and each change of mind, goes to the operations log.
The pools tell it, by an event, when a policy comes or goes.

Where the host agent serves this cloud's URI (nbcloud/agent/), the agent's autoscaler is
the only one that acts: a kernel's neither listens nor decides. And whichever process
decides, it first claims the pool's next resize in the inventory (one transaction), so
that two processes never resize one pool for one decision.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from nbcloud.core.scaling import METRICS, Decision, Policy, decide, pool_series

if TYPE_CHECKING:
    from nbcloud.services.monitor import Monitor
    from nbcloud.workflows.instance_pools import InstancePools


class Autoscaler:
    """Evaluates every pool's policy at each monitor tick and resizes pools."""

    def __init__(self, pools: InstancePools, monitor: Callable[[], Monitor]):
        self.pools = pools
        self.inventory = pools.cloud.inventory
        self._get_monitor = monitor
        self._recent: dict[str, deque] = {}        # member -> rows from recent ticks
        self._busy: set[str] = set()               # pools being resized
        self._last_logged: dict[str, str] = {}     # pool -> last decision logged
        self._lock = threading.Lock()
        self._monitor = None
        self.decisions: list[tuple[float, str, Decision]] = []   # (t, pool, decision)

    # ----- wiring to the monitor ------------------------------------------------------
    def follow(self) -> None:
        """Listen to the monitor while a pool has a policy, stop when none has (real
        hosts only: the test driver has no guests to sample). Runs on POOLS_CHANGED."""
        if self.pools.cloud.uri.startswith("test:"):
            return
        if self.inventory.agent_serves():   # the host agent scales this cloud's pools
            self.detach()
            return
        if any(r.spec.get("policy") for r in self.pools.records()):
            self.attach(self._get_monitor())
        else:
            self.detach()

    def attach(self, monitor) -> None:
        """Listen to `monitor`'s ticks (once) and have it watch every pool member."""
        if self._monitor is not monitor:
            monitor.add_listener(self.on_tick)
            self._monitor = monitor
        self.watch()

    @property
    def attached(self) -> bool:
        """Whether it listens to a monitor's ticks."""
        return self._monitor is not None

    def detach(self) -> None:
        if self._monitor is not None:
            self._monitor.remove_listener(self.on_tick)
            self._monitor = None

    def watch(self) -> None:
        """Have the monitor sample every member of a pool with a policy."""
        if self._monitor is None:
            return
        names = [m for pool in self.pools.records() if pool.spec.get("policy")
                 for m in pool.spec["members"] if self.pools.cloud.provider.exists(m)]
        if names:
            self._monitor.watch(*names)

    def on_tick(self, tick: dict) -> None:
        now = time.time()
        with self._lock:
            for name, sample in tick.items():
                if getattr(sample, "state", "running") == "running":
                    q = self._recent.setdefault(name, deque(maxlen=4000))
                    q.append({"t": sample.t, **{c: getattr(sample, c, None)
                                                for c in METRICS.values()}})
        self.step(now)

    # ----- evaluation -----------------------------------------------------------------
    def _rows(self, member: str, since: float) -> list[dict]:
        """The member's samples since `since`: the inventory's, then the ticks seen here
        that the monitor has not written yet."""
        rows = self.inventory.samples(member, since)
        newest = rows[-1]["t"] if rows else since - 1
        with self._lock:
            rows += [r for r in self._recent.get(member, ()) if r["t"] > newest]
        return rows

    def evaluate(self, pool: str, now: float | None = None) -> Decision | None:
        """The decision for pool `pool` now (None if it has no policy)."""
        record = self.pools.record(pool)
        policy = Policy.from_json(record.spec.get("policy"))
        if policy is None:
            return None
        now = time.time() if now is None else now
        windows = [r.window for r in (policy.scale_out, policy.scale_in) if r]
        since = max(now - max(windows, default=0) - 1, record.spec.get("resized", 0.0))
        members = record.spec["members"]
        rows = {m: self._rows(m, since) for m in members}
        decisions = []
        for rule in (policy.scale_out, policy.scale_in):
            if rule is not None:
                decisions.append(pool_series(rows, rule.metric, since))
        # both rules usually watch one metric; decide() needs one series per rule
        if policy.scale_out and policy.scale_in and \
                policy.scale_out.metric != policy.scale_in.metric:
            out = decide(Policy(policy.scale_out, None, policy.min, policy.max),
                         len(members), decisions[0], now)
            if out.action != "hold":
                return out
            return decide(Policy(None, policy.scale_in, policy.min, policy.max),
                          len(members), decisions[1], now)
        return decide(policy, len(members), decisions[0] if decisions else [], now)

    def step(self, now: float | None = None) -> list[tuple[str, Decision]]:
        """Evaluate every pool with a policy; start the resizes decided. Returns them.
        Nothing where the host agent serves this URI: it scales the pools itself."""
        done: list[tuple[str, Decision]] = []
        if self.inventory.agent_serves():
            return done
        for record in self.pools.records():
            if not record.spec.get("policy") or record.name in self._busy:
                continue
            if record.state != "active":   # being made or deleted by its own operation,
                continue                   # maybe in another process: not below --min
            decision = self.evaluate(record.name, now)
            if decision is None:
                continue
            self.decisions.append((time.time(), record.name, decision))
            del self.decisions[:-200]
            if decision.action == "hold":
                self._log_hold(record.name, decision)
                continue
            if not self.pools.claim_resize(record.name, record.spec.get("resized", 0.0)):
                continue   # another process resized it since this one read the record
            self._busy.add(record.name)
            self._last_logged.pop(record.name, None)
            threading.Thread(target=self._resize, args=(record.name, decision),
                             name=f"nbcloud-autoscale-{record.name}", daemon=True).start()
            done.append((record.name, decision))
        return done

    def _log_hold(self, pool: str, decision: Decision) -> None:
        # a hold is logged when it differs from the last one logged, not at every tick
        kind = decision.reason.split(" (mean")[0]
        if self._last_logged.get(pool) == kind:
            return
        self._last_logged[pool] = kind
        op = self.inventory.begin("autoscale", "ipool", pool, action="hold",
                                  size=decision.size)
        self.inventory.finish(op, "ok", f"hold at {decision.size}: {decision.reason}")

    def _resize(self, pool: str, decision: Decision) -> None:
        try:
            self.pools.scale(pool, decision.size,
                             reason=f"autoscale {decision.action}: {decision.reason}")
            self.watch()
        except Exception:  # noqa: BLE001  (the operations log has the failure)
            try:   # wait a whole window before trying again, not one tick
                self.pools.mark_resized(pool)
            except Exception:  # noqa: BLE001  (the pool may be gone meanwhile)
                pass
        finally:
            self._busy.discard(pool)

    @property
    def busy(self) -> bool:
        return bool(self._busy)
