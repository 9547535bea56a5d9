"""The host agent's process: restore what a restart stopped, then sample, scale, check and
supervise until told to stop.

One agent per host: it holds a file lock in its folder (beside the host's state file) for
as long as it runs; and one per URI in an inventory: it claims the URI's row in the
inventory's agents table and beats it every tick (kernels see it there, and defer to it
while the beat is recent). Its sampler is the same `Monitor` a kernel runs, writing every
tick instead of every 10 s so that kernels' live views lag by at most a tick; it samples
the members of autoscaled pools and whatever kernels hold a lease on.

    python -m nbcloud.agent run --uri qemu:///system [--inventory PATH] [--folder DIR]
"""
from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from pathlib import Path

from nbcloud.api import Cloud
from nbcloud.core.errors import CloudError
from nbcloud.inventory import Inventory
from nbcloud.workflows.restore import hold_cpu_shares, restore

log = logging.getLogger("nbcloud.agent")

EXIT_TAKEN = 3          # another agent serves this host or URI: the supervisor gives up
RESTORING = "restoring"
RETRY = 30.0            # seconds before a balancer that failed to start is tried again


class Taken(CloudError):
    """Another agent holds this host (its lock) or this URI (its inventory row)."""


class Agent:
    """The duties of one host's agent over one `Cloud` (its URI and inventory)."""

    def __init__(self, cloud: Cloud, interval: float = 1.0):
        self.cloud = cloud
        self.uri = cloud.ctx.inventory.key      # what its rows are keyed by (the URI)
        self.inventory = cloud.inventory        # the Inventory (agents table)
        self.records = cloud.ctx.inventory      # this cloud's view of it
        self.interval = interval
        self.grace = max(10 * interval, 15.0)   # a beat counts this long: a restart fits
        self.pid = os.getpid()
        self.restored: list[str] = []
        self._written: dict[str, str] | None = None
        self._failed: dict[str, float] = {}     # balancer -> when it last failed to start

    # ----- start and stop -------------------------------------------------------------------
    def start(self) -> list[str]:
        """Claim the URI, restore what a host restart stopped, start sampling and scaling.
        Returns what the restore did.

        The restore runs when the agent starts afresh (`host up`, a reboot), not when it
        takes over from an agent that died seconds ago (the supervisor's restart): an
        instance stopped meanwhile was stopped by someone, not by a restart, unless the
        one before died while it was still restoring."""
        before = self.inventory.agent(self.uri)   # a recent beat: this is a takeover
        other = self.inventory.claim_agent(self.uri, self.pid, self.grace)
        if other is not None:
            raise Taken(f"agent pid {other['pid']} serves {self.uri} already")
        if before is not None and before["note"] != RESTORING:
            self.restored = [f"took over from agent pid {before['pid']}: nothing restored"]
            booting: list[str] = []
        else:
            self.inventory.beat_agent(self.uri, self.pid, note=RESTORING)
            self.restored, booting = restore(self.cloud.services)
        for line in self.restored:
            log.info("restore: %s", line)
        self.inventory.beat_agent(self.uri, self.pid,
                                  note="\n".join(self.restored) or "nothing to restore")
        if booting:   # shared-CPU flavors get their share once SSH answers, as at create
            threading.Thread(target=hold_cpu_shares, args=(self.cloud.services, booting),
                             name="nbcloud-agent-shares", daemon=True).start()
        mon = self.cloud.monitor
        mon.leases = False                  # the agent reads leases, it holds none
        mon.interval = self.interval
        mon.flush_every = self.interval     # kernels read every tick from the inventory
        mon.start()
        return self.restored

    def run(self, stop: threading.Event) -> None:
        """`start`, then a step every `interval` s until `stop` is set or another agent
        took the URI over; then `close`."""
        self.start()
        try:
            next_step = time.monotonic()
            while not stop.is_set():
                try:
                    if not self.step():
                        raise Taken(f"another agent took {self.uri} over")
                except Taken:
                    raise
                except Exception as exc:  # noqa: BLE001  (a lost connection must not end it)
                    log.warning("step failed: %s: %s", type(exc).__name__, exc)
                next_step += self.interval
                now = time.monotonic()
                if next_step < now:
                    next_step = now + self.interval
                stop.wait(next_step - now)
        finally:
            self.close()

    def close(self) -> None:
        self.cloud.autoscaler.detach()
        self.cloud.services.dns.stop_checker()
        self.cloud.monitor.stop()           # writes what is buffered
        self.inventory.release_agent(self.uri, self.pid)
        self.cloud.close()

    # ----- one step (the sampler ticks on its own thread) -------------------------------------
    def step(self) -> bool:
        """Watch what must be sampled, keep the autoscaler listening, the failover checker
        running and the balancers up; beat. False if the URI is no longer this agent's."""
        self._watch()
        self._failover()
        self._supervise_balancers()
        return self._beat()

    def _watch(self) -> None:
        """Sample the members of autoscaled pools and what kernels hold a lease on."""
        mon, scaler = self.cloud.monitor, self.cloud.autoscaler
        if not scaler.attached:   # a pool resized here with no policy left detaches it
            scaler.attach(mon)
        wanted = {m for p in self.cloud.ipools.records() if p.spec.get("policy")
                  for m in p.spec["members"]} | set(self.records.watched())
        have = set(mon.watched)
        for name in sorted(wanted - have):
            try:
                mon.watch(name, start=False)
            except CloudError:
                continue   # deleted meanwhile, or not nbcloud's
        if have - wanted:
            mon.unwatch(*sorted(have - wanted))

    def _failover(self) -> None:
        if any(r.spec.get("type") == "FAILOVER" for r in self.records.all("dns")):
            self.cloud.services.dns.start_checker()   # ends itself when none is left

    def _supervise_balancers(self) -> None:
        """Start a balancer whose HAProxy died (each restart in the operations log)."""
        provider = self.cloud.provider
        if not provider.runs_balancers:
            return
        for r in self.records.all("loadbalancer"):
            if provider.balancer_running(r.name) is not False or \
                    time.time() - self._failed.get(r.name, 0.0) < RETRY:
                continue
            if any(op["kind"] == "loadbalancer" and op["name"] == r.name
                   for op in self.records.unfinished()):
                continue   # being created, changed or deleted by someone right now
            try:
                with self.records.operation("restart", "loadbalancer", r.name) as op:
                    self.cloud.lbs.ensure(r.name)
                    op.detail = "its HAProxy was not running: started again by the agent"
                log.info("restarted load balancer %s", r.name)
            except CloudError as exc:
                self._failed[r.name] = time.time()
                log.warning("load balancer %s did not start: %s", r.name, exc)
                continue
            if self.records.get("loadbalancer", r.name) is None:   # deleted meanwhile
                provider.stop_balancer(r.name)

    def _beat(self) -> bool:
        states = self.cloud.monitor.states
        changed = states != self._written
        ok = self.inventory.beat_agent(self.uri, self.pid,
                                       states=states if changed else None)
        if changed:
            self._written = states
        return ok


def run_agent(uri: str, inventory: Path | None, folder: Path,
              interval: float = 1.0) -> int:
    """The agent's process: lock the host, serve `uri` from `inventory` until SIGTERM.
    Returns the exit status (EXIT_TAKEN when another agent holds the host or URI)."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / "agent.lock", "a")   # held, and freed by the kernel at exit
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another agent runs for this host (its pid is in %s)", folder / "agent.pid")
        return EXIT_TAKEN
    pidfile = folder / "agent.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        # an empty inventory stays empty: filled from libvirt, it would hold every nbcloud
        # object of the host, other people's too, and the agent acts on what it holds
        cloud = Cloud(uri, inventory=Inventory(inventory) if inventory else None,
                      rebuild_empty=False)
        log.info("agent pid %d serves %s from %s", os.getpid(), uri, cloud.inventory.path)
        Agent(cloud, interval).run(stop)
        return 0
    except Taken as exc:
        log.error("%s", exc)
        return EXIT_TAKEN
    except CloudError as exc:   # no daemon answering yet: the supervisor tries again
        log.error("%s", exc)
        return 1
    finally:
        pidfile.unlink(missing_ok=True)
        lock.close()
