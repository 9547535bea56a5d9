"""The monitor against a real TCG guest: a CPU burner, a `dd` to a disk, and SSH traffic,
each checked against an independent witness (the QEMU process's own CPU time, the bytes
`dd` wrote, the guest's /proc/net/dev), then the same samples read back from SQLite and
drawn by the live view.

The flavor is c.nano (one vCPU, no CPU cap: the t.* flavors are quota-capped after boot).
"""
from __future__ import annotations

import os
import statistics
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

from nbcloud.services.monitor import THREAD_NAME

NAME = "mo-mon"
# a network of its own: on a host shared by many tests the default one's reservation
# range can be held by the leases of deleted instances
NET, CIDR = "mo-net", "10.151.0.0/24"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def mo_network(cloud):
    """An isolated network of this module (the host reaches its guests, nothing else)."""
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)
    if NET in [n.name for n in cloud.networks.list()]:
        cloud.networks.delete(NET)
    cloud.networks.create(NET, CIDR, "isolated")
    yield NET
    cloud.networks.delete(NET)


@pytest.fixture(scope="module")
def guest(cloud, mo_network):
    inst = cloud.instances.create(NAME, image="tiny", flavor="c.nano", network=mo_network)
    yield inst
    cloud.monitor.unwatch(NAME)
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)


def qemu_cpu_seconds(name: str) -> float:
    """utime + stime of the instance's QEMU process, from /proc (not through libvirt)."""
    pid = Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def host_idle_cores(seconds_fn):
    """Run `seconds_fn()` and return (its result, how many host cores stood idle)."""
    def idle():
        parts = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        return int(parts[3]) + int(parts[4]), time.monotonic()
    i0, t0 = idle()
    result = seconds_fn()
    i1, t1 = idle()
    return result, (i1 - i0) / CLK_TCK / (t1 - t0)


def collect(monitor, name: str, ticks: int, witness=None) -> list:
    """The next `ticks` samples of `name` the sampler thread hands its listeners (waited
    for, however slowly a loaded host delivers them); with `witness`, triples (sample,
    witness(), monotonic time) read as each tick arrives."""
    got = []
    enough = threading.Event()

    def listener(tick):
        if name in tick:
            got.append((tick[name], witness() if witness else None, time.monotonic()))
            if len(got) >= ticks:
                enough.set()
    monitor.add_listener(listener)
    try:
        if not enough.wait(60 + 10 * ticks * monitor.interval):
            pytest.fail(f"the sampler handed over {len(got)} of {ticks} ticks")
    finally:
        monitor.remove_listener(listener)
    return [g if witness else g[0] for g in got if g[0].state == "running"]


def integrate(samples: list, field: str, since: float) -> float:
    """Bytes from rates: each rate times the time since the sample before it."""
    total = 0.0
    for before, s in pairwise(samples):
        value = getattr(s, field)
        if s.t >= since and value:
            total += value * (s.t - before.t)
    return total


def test_monitor_sees_cpu_disk_and_network_of_a_real_guest(cloud, guest):
    from nbcloud.ui.monitor import SERIES, LiveView
    mon = cloud.monitor
    mon.interval = 1.0
    mon.watch(NAME)
    assert THREAD_NAME in [t.name for t in __import__("threading").enumerate()]
    view = LiveView(mon, [NAME])
    idle = collect(mon, NAME, 3)   # ticks, at 1 s each
    assert idle and all(s.mem_used and s.mem_used > 64 << 20 for s in idle)

    # --- CPU: a busy loop in the guest -------------------------------------------------
    pid = guest.ssh("(while :; do :; done) >/dev/null 2>&1 & echo $!").strip()
    collect(mon, NAME, 2)  # the rate settles on the loop, not on its start: skip 2 ticks
    burn, idle_cores = host_idle_cores(
        lambda: collect(mon, NAME, 6, witness=lambda: qemu_cpu_seconds(NAME)))
    guest.ssh(f"kill {pid}")
    (_s0, q0, t0), (_s1, q1, t1) = burn[0], burn[-1]
    witness = (q1 - q0) / (t1 - t0) * 100
    # the monitor's figure over the same ticks, each weighted by its own span
    spans = [(b.cpu, b.t - a.t) for (a, *_), (b, *_) in pairwise(burn)]
    cpu = sum(c * d for c, d in spans) / sum(d for _c, d in spans)
    base = statistics.median(s.cpu for s in idle if s.cpu is not None)
    print(f"\ncpu: idle {base:.1f}%, burner {cpu:.1f}% (QEMU process {witness:.1f}%), "
          f"host cores idle meanwhile {idle_cores:.2f}")
    # the monitor says what QEMU really got ...
    assert cpu == pytest.approx(witness, abs=12)
    # ... which is one whole vCPU when the host had a core to give it (TCG: the guest's
    # vCPU is one host thread; on a host busy with other work it gets less, and the
    # monitor must then show less, which the line above checks)
    if idle_cores >= 0.5:
        assert cpu >= 80
    assert cpu > base + 3   # the loop shows, even on a host that gives it little

    # --- disk: 24 MiB written with dd ----------------------------------------------------
    def sectors_written() -> int:   # the guest's own count (/sys/block/vda/stat, field 7)
        return int(guest.ssh("cat /sys/block/vda/stat").split()[6])
    written = 24 << 20
    w0 = sectors_written()
    t_dd = time.time()
    guest.ssh(f"dd if=/dev/zero of=/dev/vda bs=64k count={written >> 16} conv=fsync "
              "2>/dev/null")
    w1 = sectors_written()
    during = collect(mon, NAME, 3)
    assert any(s.disk_wr for s in during + mon.history(NAME, 30)), \
        "a non-zero disk write rate after dd"
    total = integrate(mon.history(NAME, 60), "disk_wr", t_dd)
    guest_bytes = (w1 - w0) * 512
    print(f"disk: monitor {total / 2**20:.1f} MiB written, the guest's block layer "
          f"{guest_bytes / 2**20:.1f} MiB, dd {written >> 20} MiB")
    assert guest_bytes >= written
    assert total == pytest.approx(guest_bytes, rel=0.25)

    # --- network: 2 MB up and 2 MB down over SSH -----------------------------------------
    def dev():
        line = [ln for ln in guest.ssh("cat /proc/net/dev").splitlines() if "eth0:" in ln]
        parts = line[0].split(":", 1)[1].split()
        return int(parts[0]), int(parts[8])
    rx0, tx0 = dev()
    t_net = time.time()
    client = guest._ssh_client()
    stdin, stdout, _ = client.exec_command("cat > /dev/null")
    stdin.write(b"x" * 2_000_000)
    stdin.channel.shutdown_write()
    assert stdout.channel.recv_exit_status() == 0
    assert len(guest.ssh("head -c 2000000 /dev/zero")) == 2_000_000
    rx1, tx1 = dev()
    net = collect(mon, NAME, 3)
    hist = mon.history(NAME, 60)
    window = [s for s in hist if s.t >= t_net]
    rx, tx = integrate(hist, "net_rx", t_net), integrate(hist, "net_tx", t_net)
    print(f"net: monitor rx {rx / 1e6:.2f} MB tx {tx / 1e6:.2f} MB; guest eth0 rx "
          f"{(rx1 - rx0) / 1e6:.2f} MB tx {(tx1 - tx0) / 1e6:.2f} MB")
    assert net and any(s.net_rx for s in window) and any(s.net_tx for s in window)
    assert rx == pytest.approx(rx1 - rx0, rel=0.5)
    assert tx == pytest.approx(tx1 - tx0, rel=0.5)

    # --- the same samples from SQLite, and in the live figure ----------------------------
    stored = mon.history(NAME, 300)
    assert max(s.cpu or 0 for s in stored) >= cpu * 0.8
    assert max(s.disk_wr or 0 for s in stored) > 0
    shown = view.points(NAME, "cpu")
    assert view.updates >= 10 and max(v or 0 for v in shown) >= cpu * 0.8
    wr_trace = view.figure.data[[f for f, *_ in SERIES].index("disk_wr")]
    assert max(v or 0 for v in wr_trace.y) > 0
    view.close()
    mon.stop()
    assert THREAD_NAME not in [t.name for t in __import__("threading").enumerate()]
