"""Launching instances: each create runs in a worker thread, watched from the caller's.

The caller's thread only waits, ticks the progress (elapsed time) and takes Ctrl-C: a
kernel interrupt raises KeyboardInterrupt in the main thread, never in a worker, so the
workers are told to give up at their next safe point (before the domain starts, or in the
SSH wait). Each then either rolls back what it made (not started: nothing is left) or
leaves a running instance recorded as 'starting'. The caller gets `Interrupted` with one
line saying which is which.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from nbcloud.core.errors import CloudError, Interrupted, InvalidSpec
from nbcloud.core.spec import InstanceSpec

#: The stages of one create, in order (a progress bar's steps); "started" ends a create
#: that does not wait for SSH, "failed" one that went wrong.
STAGES = ("queued", "provisioning", "starting", "booting", "ready")


class Watch:
    """What the workers report to and what tells them to stop: stage per instance (with
    the time it was reached), and a cancel flag. Thread-safe."""

    def __init__(self, names: list[str], wait: bool, progress=None):
        self.names = names
        self.wait = wait
        self.progress = progress
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._stages = {n: ("queued", self.start) for n in names}
        self._cancel = threading.Event()

    def stage(self, name: str, stage: str) -> None:
        with self._lock:
            self._stages[name] = (stage, time.monotonic())

    def stages(self) -> dict[str, tuple[str, float]]:
        with self._lock:
            return dict(self._stages)

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self, name: str) -> None:
        """A worker's safe point: give up here if the user interrupted."""
        if self._cancel.is_set():
            raise KeyboardInterrupt(f"the create of {name} was cancelled")

    def tick(self) -> None:
        if self.progress is not None:
            self.progress.update(self)


def _fate(instances, name: str, future: concurrent.futures.Future,
          wait: bool) -> str:
    """One clause of the interrupted message: what became of instance `name`."""
    if future.done() and not future.cancelled():
        exc = future.exception()
        if exc is None:
            return f"{name} is SSH-ready" if wait else f"{name} is running"
        if not isinstance(exc, KeyboardInterrupt):  # failed on its own, before Ctrl-C
            return f"{name} failed ({exc})"
    provider = instances.provider
    if provider.exists(name):
        try:
            state = provider.state(name)
        except CloudError:  # gone meanwhile
            state = "gone"
        if state == "running":
            return f"{name} is running but not SSH-ready yet"
        return f"{name} is {state}"
    return f"{name} was not created"


def launch(instances, specs: list[InstanceSpec], wait: bool, stack: str,
           progress=None, keep: bool = False) -> list:
    """Create `specs` in parallel threads; returns the instances in order. Ctrl-C raises
    `Interrupted` after every worker has settled. `instances` is the instance service
    (its `create_one` makes one instance, its provider says what became of one)."""
    watch = Watch([s.name for s in specs], wait, progress)
    pool = ThreadPoolExecutor(max_workers=min(len(specs), 8),
                              thread_name_prefix="nbcloud-create")
    futures = [pool.submit(instances.create_one, s, wait, stack, watch, keep)
               for s in specs]
    try:
        try:
            pending = set(futures)
            while pending:
                _, pending = concurrent.futures.wait(pending, timeout=0.25)
                watch.tick()
        except KeyboardInterrupt:
            watch.cancel()
            for f in futures:
                f.cancel()
            concurrent.futures.wait(futures)
            fates = [_fate(instances, s.name, f, wait) for s, f in zip(specs, futures)]
            message = "interrupted: " + "; ".join(fates)
            if progress is not None:
                progress.finish(watch, message)
            raise Interrupted(message) from None
    finally:
        pool.shutdown(wait=True)
    for s, f in zip(specs, futures):
        if f.exception() is not None:
            watch.stage(s.name, "failed")
    if progress is not None:
        progress.finish(watch, None)
    return [f.result() for f in futures]  # the first failure, as the caller would see it


def warm_base(instances, spec: InstanceSpec, progress=None, *,
              build_missing: bool, asked: str = "boot clone") -> str:
    """Build the warm base that instances like `spec` are cloned from, if it is missing
    or stale, as a step of `progress` and an operation of the log; returns what was done
    ("" if nothing was). Before creates that must be clones (`build_missing`), a kind of
    instance that can never be one is refused in one line (`asked` is what asked for it);
    after creates of "auto", a
    failed build is logged and the creates stand (the next ones boot cold too)."""
    provider = instances.provider
    image, flavor = provider.images.get(spec.image), provider.flavor(spec.flavor)
    check = provider.clone_check(image, flavor, spec.networks, spec.screen, spec.sync)
    if check.ok or not (check.base_missing or build_missing):
        return ""
    if not check.base_missing:
        raise InvalidSpec(f"{asked}: {check.why}")
    step = getattr(progress, "step", None)
    label = f"warm base {spec.image} {flavor.vcpus} vCPU {flavor.memory >> 20} MiB"
    report = (lambda i, n, what: step(label, i, n, what)) if step else None
    try:
        with instances.ctx.inventory.operation("warm", "image", spec.image,
                                               vcpus=flavor.vcpus, memory=flavor.memory) as op:
            op.detail = provider.warm_base(image, flavor, spec.networks[0], report)
    except CloudError as exc:
        if step:
            step(label, 0, 0, f"failed: {exc}")
        if build_missing:
            raise
        return ""
    return op.detail
