"""Soak: tiny instances created and deleted in a loop, then nothing of them may be left.

Bounded by a count and a time budget, whichever comes first (RL_SOAK_COUNT, default 50;
RL_SOAK_SECONDS, default 75), at most three at a time. Most are created with
`wait=False` (the domain is started, SSH is not waited for); every tenth waits for SSH
and runs a command, so the loop also proves that the guests it makes are real.

Leaks are read from libvirt and the inventory directly (leaks.py): domains, overlays
and scratch disks, seed ISOs, DHCP reservations and DNS records (definition and live),
console logs, inventory rows, operations never finished.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.reliability.leaks import leftovers

PREFIX = "rl-soak-"
COUNT = int(os.environ.get("RL_SOAK_COUNT", "50"))
BUDGET = float(os.environ.get("RL_SOAK_SECONDS", "75"))
PARALLEL = 3
SSH_EVERY = 10


def _clean(cloud) -> None:
    for name in cloud.provider.managed():
        if name.startswith(PREFIX):
            cloud.instances.delete(name)


def test_soak_create_delete_leaves_nothing(cloud, recorder):
    _clean(cloud)
    assert leftovers(cloud, PREFIX) == [], "leftovers of an earlier run"
    ops_before = len(cloud.inventory.operations(100000))
    deadline = time.monotonic() + BUDGET
    done: list[str] = []
    errors: list[str] = []
    ssh_checked: list[str] = []
    lock = threading.Lock()

    def cycle(i: int) -> None:
        if time.monotonic() >= deadline:
            return  # the budget is spent: the cycles not started yet are skipped
        name = f"{PREFIX}{i}"
        wait = i % SSH_EVERY == 0
        try:
            inst = cloud.instances.create(name, image="tiny", flavor="t.nano",
                                          network="nbcloud", wait=wait)
            if wait:
                assert inst.ssh("hostname").strip() == name
                with lock:
                    ssh_checked.append(name)
            cloud.instances.delete(name)
        except Exception as exc:  # noqa: BLE001 (every failure is reported below)
            with lock:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
            return
        with lock:
            done.append(name)

    start = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            list(pool.map(cycle, range(COUNT)))
    finally:
        seconds = time.monotonic() - start
        recorder.soaked(len(done))
        left = leftovers(cloud, PREFIX)
        recorder.lose(left)
        if left:  # leave the host clean for the next tests even when this one fails
            _clean(cloud)
    print(f"soak: {len(done)} create/delete cycles in {seconds:.0f} s "
          f"({len(ssh_checked)} SSH-checked), {len(errors)} errors")
    assert not errors, errors[:5]
    assert left == []
    assert len(done) >= min(COUNT, 10), "the soak did too few cycles to mean anything"
    assert ssh_checked, "no soak instance was SSH-checked"
    ops = [o for o in cloud.inventory.operations(100000)[:len(cloud.inventory.operations(
        100000)) - ops_before] if o["name"].startswith(PREFIX)]
    assert {o["result"] for o in ops} == {"ok"}
    assert len(ops) == 2 * len(done)
