"""Monitoring: one sampling thread per Cloud (so per kernel), one bulk stats call per tick.

Each tick asks the provider for every domain's counters in ONE call, turns the counters of
the watched instances into rates (CPU % of the flavor's vCPUs, memory used, disk and
network bytes/s), hands the tick to the listeners (live graphs, the autoscaler) on the
sampler thread, and buffers rows for the inventory, written in batches.

Where the host agent serves this cloud's URI (nbcloud/agent/), the agent samples and
writes every tick; a tick here then asks libvirt nothing: it renews a lease on the
watched names (the agent samples what some kernel watches), reads the rows the agent
wrote since the last tick, and takes instance states from the agent's heartbeat. The
listeners cannot tell the difference. Without an agent (a session daemon, Binder), or
when its heartbeat stops, the kernel samples itself again.

    mon = cloud.monitor
    mon.watch("web-1")                   # starts the thread
    mon.add_listener(lambda tick: print(tick["web-1"].cpu))
    mon.history("web-1", since=600)      # the last 10 minutes, from SQLite
"""
from __future__ import annotations

import atexit
import contextvars
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from nbcloud.context import Context
from nbcloud.core.errors import InvalidSpec
from nbcloud.core.events import INSTANCE_STATE
from nbcloud.core.spec import check_name

THREAD_NAME = "nbcloud-monitor"
RATES = ("cpu", "mem_used", "disk_rd", "disk_wr", "net_rx", "net_tx")
# counters that only grow while a domain runs; a rate is their change over time
_COUNTERS = ("cpu_ns", "disk_rd", "disk_wr", "net_rx", "net_tx")
MIN_INTERVAL, MAX_INTERVAL = 0.2, 3600.0
LEASE = 60.0   # seconds the agent keeps sampling a name after a kernel last asked


@dataclass(frozen=True)
class Sample:
    """One instance at one tick. Rates are None where there is no earlier reading to
    compare with (the first tick, after a restart) or libvirt could not read the counter.

    cpu: % of the flavor's vCPUs (one busy vCPU of two is 50); mem_used: bytes; disk_rd,
    disk_wr, net_rx, net_tx: bytes per second (rx = received by the guest)."""
    name: str
    t: float              # epoch seconds
    state: str
    cpu: float | None = None
    mem_used: float | None = None
    disk_rd: float | None = None
    disk_wr: float | None = None
    net_rx: float | None = None
    net_tx: float | None = None

    def row(self) -> tuple:
        """The inventory row (name, t, cpu, mem_used, disk_rd, disk_wr, net_rx, net_tx)."""
        return (self.name, self.t, *(getattr(self, f) for f in RATES))

    @classmethod
    def from_row(cls, row: dict) -> Sample:
        return cls(row["name"], row["t"], "running", *(row[f] for f in RATES))

    def __repr__(self) -> str:
        def fmt(v, scale=1.0, unit=""):
            return "-" if v is None else f"{v / scale:.1f}{unit}"
        return (f"<Sample {self.name} {self.state} cpu={fmt(self.cpu, unit='%')} "
                f"mem={fmt(self.mem_used, 2**20, 'M')} "
                f"disk={fmt(self.disk_rd, 1e3)}/{fmt(self.disk_wr, 1e3)}kB/s "
                f"net={fmt(self.net_rx, 1e3)}/{fmt(self.net_tx, 1e3)}kB/s>")


def counters(record: dict) -> dict[str, float]:
    """The growing counters in one libvirt stats record: total CPU time (ns), and disk and
    network bytes summed over all disks and interfaces. Absent ones are left out."""
    out: dict[str, float] = {}
    if "cpu.time" in record:
        out["cpu_ns"] = record["cpu.time"]
    for prefix, count_key, pairs in (("block", "block.count", (("rd", "disk_rd"),
                                                               ("wr", "disk_wr"))),
                                     ("net", "net.count", (("rx", "net_rx"),
                                                           ("tx", "net_tx")))):
        for what, key in pairs:
            values = [record.get(f"{prefix}.{i}.{what}.bytes")
                      for i in range(record.get(count_key, 0))]
            if values and all(v is not None for v in values):
                out[key] = sum(values)
    return out


def memory_used(record: dict) -> float | None:
    """Bytes of memory in use: the guest's own figure when its balloon driver reports one
    (available - unused), else the QEMU process's resident memory (`balloon.rss`), which
    also holds QEMU's own overhead (under TCG its translation cache)."""
    if "balloon.available" in record and "balloon.unused" in record:
        return (record["balloon.available"] - record["balloon.unused"]) * 1024.0
    if "balloon.rss" in record:
        return record["balloon.rss"] * 1024.0
    return None


def derive(name: str, record: dict, last: dict[str, tuple[float, float]], now: float,
           mono: float, vcpus: int) -> Sample:
    """The sample of one instance from its stats `record` read at `mono` (monotonic s)
    and the `last` counters seen ({counter: (value, mono)}, updated in place).

    Each counter keeps its own time, so a counter libvirt skipped for one tick (a domain
    busy with a job) still gives a true rate the tick after."""
    state = record.get("state", "unknown")
    if state != "running":
        last.clear()   # counters start again from zero when the domain next starts
        return Sample(name, now, state)
    rates: dict[str, float | None] = dict.fromkeys(RATES)
    for key, value in counters(record).items():
        before = last.get(key)
        last[key] = (value, mono)
        if before is None or value < before[0] or mono <= before[1]:
            continue   # first reading, or the counter went back (the domain restarted)
        per_s = (value - before[0]) / (mono - before[1])
        if key == "cpu_ns":
            n = record.get("vcpu.current") or vcpus or 1
            rates["cpu"] = per_s / 1e9 / n * 100.0
        else:
            rates[key] = per_s
    rates["mem_used"] = memory_used(record)
    return Sample(name, now, state, **rates)


def parse_duration(text: str) -> float:
    """'90s', '10m', '2h', '1d' or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = str(text).strip().lower()
    scale = units.get(raw[-1:], None)
    try:
        value = float(raw[:-1] if scale else raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise InvalidSpec(f"duration {text!r} is not allowed: use a positive number with "
                          "s, m, h or d, like 90s or 10m")
    return value * (scale or 1)


def check_interval(value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise InvalidSpec(f"interval {value!r} is not allowed: use seconds between "
                          f"{MIN_INTERVAL} and {MAX_INTERVAL:.0f}")
    return seconds


Listener = Callable[[dict[str, Sample]], object]


class Monitor:
    """The sampler of one cloud: watched instances, one thread, listeners, batched writes.

    Listeners and error handlers run on the sampler thread: keep them short (a widget's
    `batch_update`), and never call `stop()` from one."""

    def __init__(self, ctx: Context, interval: float = 1.0, flush_every: float = 10.0,
                 keep: float = 86400.0):
        self.ctx = ctx
        self.provider = ctx.provider
        self._interval = check_interval(interval)
        self.flush_every = flush_every
        self.keep = keep                       # seconds of samples kept in the inventory
        self._watched: dict[str, int] = {}     # name -> the flavor's vCPUs
        self._last: dict[str, dict[str, tuple[float, float]]] = {}
        self._states: dict[str, str] = {}      # our instances' states at the last tick
        self._changed: list[str] = []
        self._known: set[str] | None = None    # instance names in the inventory
        self._listeners: list[tuple[Listener, Callable | None]] = []
        self._buffer: list[tuple] = []
        self._flushed = time.monotonic()
        self._pruned = 0.0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest: dict[str, Sample] = {}
        self.source = "here"                   # or "agent": who sampled the last tick
        self.leases = True                     # ask the agent to sample what is watched
        self._seen: dict[str, float] = {}      # name -> newest agent sample read
        self._leased = 0.0
        self.ticks = 0
        self.state_changes = 0
        self.last_error: str | None = None
        _MONITORS.add(self)

    @property
    def note(self) -> str:
        """What the provider cannot read (a cloud's counters for a member), or ''."""
        return self.provider.stats_note()

    # ----- what is watched ----------------------------------------------------------------
    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        self._interval = check_interval(seconds)

    @property
    def watched(self) -> list[str]:
        with self._lock:
            return sorted(self._watched)

    def watch(self, *names: str, start: bool = True) -> None:
        """Sample instances `names` from the next tick on (and start the thread)."""
        found = {}
        for name in names:
            check_name(name, "instance name")
            meta = self.provider.metadata(name)   # NotFound / NotManaged, one line
            found[name] = _flavor_vcpus(meta.get("flavor", ""))
        with self._lock:
            self._watched.update(found)
        if found and self.leases and self.ctx.inventory.agent_serves():   # from next tick
            self.ctx.inventory.watch(list(found), time.time() + LEASE)
        if start:
            self.start()

    def unwatch(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._watched.pop(name, None)
                self._last.pop(name, None)
                self.latest.pop(name, None)
                self._seen.pop(name, None)
        if names and self.leases:
            self.ctx.inventory.unwatch(list(names))

    def add_listener(self, fn: Listener, errors: Callable[[BaseException], object] | None
                     = None) -> Listener:
        """Call `fn(tick)` on the sampler thread after each tick, `tick` being {name: Sample}
        of the watched instances; `errors(exc)` when a tick fails. Returns `fn`."""
        with self._lock:
            self._listeners.append((fn, errors))
        return fn

    def remove_listener(self, fn: Listener) -> None:
        with self._lock:
            # == rather than `is`: each `view.method` is a new bound-method object
            self._listeners = [(f, e) for f, e in self._listeners if f != fn]

    # ----- the thread ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the sampler thread if it is not running (one per Monitor)."""
        with self._lock:
            if self.running:
                return
            # a fresh event per thread: a thread that outlived its stop() (a tick stuck in
            # a slow daemon) still sees its own event set, and ends after that tick
            self._stop = threading.Event()
            # The thread runs in a copy of the starting cell's context: with ipykernel >= 7
            # the parent header is a context variable, so anything the thread sends is
            # attributed to that cell rather than to whichever cell runs at the time.
            context = contextvars.copy_context()
            self._thread = threading.Thread(target=context.run,
                                            args=(self._run, self._stop),
                                            name=THREAD_NAME, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (waiting for the tick under way) and write what is buffered."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        try:
            self.flush()
        except Exception:  # noqa: BLE001  (the inventory may already be closed at exit)
            pass

    def _run(self, stop: threading.Event) -> None:
        next_tick = time.monotonic()
        while not stop.is_set():
            try:
                self.tick()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001  (a lost connection must not end it)
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._notify_error(exc)
            # a fixed schedule: a slow tick does not shift the ones after it
            next_tick += self._interval
            now = time.monotonic()
            if next_tick < now:
                next_tick = now + self._interval
            stop.wait(next_tick - now)

    # ----- one tick -----------------------------------------------------------------------
    def tick(self) -> dict[str, Sample]:
        """One pass: one bulk stats call, rates of the watched instances, listeners told,
        rows buffered (written every `flush_every` s). Returns {name: Sample}. Where the
        host agent samples for this URI, its rows instead (`_from_agent`)."""
        with self._lock:
            watched = dict(self._watched)
        agent = self.ctx.inventory.agent()
        if agent is not None and agent["pid"] != os.getpid():
            ticks, changed = self._from_agent(agent, sorted(watched))
            self.source = "agent"
        else:
            ticks, changed = [self._sample(watched)], self._changed
            self.source = "here"
        for tick in ticks:
            with self._lock:
                self.latest.update(tick)
                self.ticks += 1
                if self.source == "here":
                    self._buffer.extend(s.row() for s in tick.values()
                                        if s.state == "running")
                listeners = list(self._listeners)
            for fn, errors in listeners:
                try:
                    fn(tick)
                except Exception as exc:  # noqa: BLE001  (one broken view must not stop others)
                    if errors is not None:
                        errors(exc)
        if changed:
            self.state_changes += 1
            try:   # the live topology redraws (a drawing problem is not the sampler's)
                self.ctx.events.emit(INSTANCE_STATE, names=changed)
            except Exception:  # noqa: BLE001
                pass
        if time.monotonic() - self._flushed >= self.flush_every:
            self.flush()
        return ticks[-1] if ticks else {}

    def _sample(self, watched: dict[str, int]) -> dict[str, Sample]:
        """Ask libvirt: the tick of the watched instances (and the states of all ours)."""
        if self._known is None:   # the inventory's instances, re-read at each flush
            self._known = {r.name for r in self.ctx.inventory.all("instance")}
        ours = sorted(self._known | set(watched))
        start = time.monotonic()
        records = self.provider.domain_stats(ours)   # the one bulk call of the tick
        # the counters were read somewhere inside the call: its middle is the best guess
        # (on a busy host the call itself can take a good part of a tick)
        end = time.monotonic()
        mono = (start + end) / 2
        now = time.time() - (end - mono)   # the sample's time is that same instant
        tick = {}
        for name, vcpus in watched.items():
            record = records.get(name)
            if record is None:
                self._last.pop(name, None)
                tick[name] = Sample(name, now, "deleted")
                continue
            tick[name] = derive(name, record, self._last.setdefault(name, {}), now, mono,
                                vcpus)
        self._changed = self._state_changes(
            {name: records[name].get("state", "unknown") if name in records else "deleted"
             for name in ours})
        return tick

    def _from_agent(self, agent: dict, names: list[str]) -> tuple[list[dict], list[str]]:
        """The ticks the agent wrote for `names` since the last read (usually one), and
        the instances whose state changed according to its heartbeat."""
        now = time.time()
        if names and self.leases and now - self._leased > LEASE / 3:
            self.ctx.inventory.watch(names, now + LEASE)
            self._leased = now
        fresh = now - 2 * self._interval   # no replay of history: a view reads that itself
        groups: dict[float, dict[str, Sample]] = {}
        if names:
            after = min(self._seen.get(n, fresh) for n in names)
            for row in self.ctx.inventory.samples_after(names, after):
                if row["t"] > self._seen.get(row["name"], fresh):
                    self._seen[row["name"]] = row["t"]
                    groups.setdefault(row["t"], {})[row["name"]] = Sample.from_row(row)
        ticks = [groups[t] for t in sorted(groups)] or [{}]
        states = agent["states"]
        for name in names:   # a stopped or deleted instance has no rows: its state says
            if states.get(name, "running") != "running":
                ticks[-1][name] = Sample(name, now, states[name])
        return ([t for t in ticks if t] or []), self._state_changes(states)

    def _state_changes(self, states: dict[str, str]) -> list[str]:
        # the watched instances and those the inventory knows: other people's domains on
        # the same host are not asked for, nor redrawn for
        before, self._states = self._states, dict(states)
        if not before:
            return []
        return sorted(n for n in states if n in before and before[n] != states[n])

    @property
    def states(self) -> dict[str, str]:
        """name -> state of our instances at the last tick (what the agent publishes)."""
        return dict(self._states)

    def _notify_error(self, exc: BaseException) -> None:
        with self._lock:
            handlers = [e for _f, e in self._listeners if e is not None]
        for handler in handlers:
            try:
                handler(exc)
            except Exception:  # noqa: BLE001
                pass

    # ----- the inventory ------------------------------------------------------------------
    def flush(self) -> int:
        """Write the buffered samples in one transaction; returns how many."""
        with self._lock:
            rows, self._buffer = self._buffer, []
            self._flushed = time.monotonic()
            self._known = None
        self.ctx.inventory.add_samples(rows)
        if rows and time.time() - self._pruned > 3600:
            self._pruned = time.time()
            self.ctx.inventory.prune_samples(self._pruned - self.keep)
        return len(rows)

    def history(self, name: str, since: float) -> list[Sample]:
        """Samples of `name` from the last `since` seconds, oldest first (from SQLite,
        after writing what is buffered)."""
        check_name(name, "instance name")
        self.flush()
        rows = self.ctx.inventory.samples(name, time.time() - since)
        return [Sample.from_row(r) for r in rows]

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._listeners.clear()
            names = list(self._watched)
        try:   # the agent need not sample for this kernel any more
            if names and self.leases:
                self.ctx.inventory.unwatch(names)
        except Exception:  # noqa: BLE001  (the inventory may already be closed at exit)
            pass
        _MONITORS.discard(self)

    def __repr__(self) -> str:
        state = f"every {self._interval:g} s" if self.running else "stopped"
        return f"<Monitor {state}, watching {', '.join(self.watched) or 'nothing'}>"

    def _repr_html_(self) -> str:
        import html
        return f"<code>{html.escape(repr(self))}</code>"


def _flavor_vcpus(flavor: str) -> int:
    from nbcloud.core.flavors import CATALOGUE
    if flavor in CATALOGUE:
        return CATALOGUE[flavor].vcpus
    if flavor.startswith("custom-") and "c-" in flavor:   # custom-2c-1024m
        try:
            return int(flavor.split("-")[1].rstrip("c"))
        except ValueError:
            pass
    return 0   # unknown: the domain's live vCPU count is used


# every Monitor of this process, stopped at interpreter exit so buffered samples are
# written (the threads are daemons, so a kernel shutdown never waits on them)
_MONITORS: weakref.WeakSet[Monitor] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for mon in list(_MONITORS):
        try:
            mon.stop(timeout=2.0)
        except Exception:  # noqa: BLE001  (exiting: nothing left to tell)
            pass
