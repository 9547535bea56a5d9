"""The monitor on libvirt's test driver: rates from two stat snapshots, batched inventory
writes, history from SQLite, listeners, the live figure's data, and the sampler thread
gone after `%unload_ext nbcloud`.

The test driver reports only a domain's state, so rates are checked on synthetic stats
records shaped as libvirt's (the real daemon's are checked in the integration tier).
"""
import threading
import time

import pytest
from IPython.core.error import UsageError

from nbcloud.providers.libvirt import xml as lx
from nbcloud.services.monitor import THREAD_NAME, Sample, counters, derive, memory_used


def record(cpu_s=0.0, rd=0, wr=0, rx=0, tx=0, vcpus=1, **extra):
    """A stats record as virConnectGetAllDomainStats gives it (two disks, one NIC)."""
    r = {"state": "running", "cpu.time": int(cpu_s * 1e9), "vcpu.current": vcpus,
         "balloon.rss": 65536, "block.count": 2,
         "block.0.rd.bytes": rd, "block.0.wr.bytes": wr,
         "block.1.rd.bytes": 1000, "block.1.wr.bytes": 0,
         "net.count": 1, "net.0.rx.bytes": rx, "net.0.tx.bytes": tx}
    r.update(extra)
    return r


def test_rates_from_two_snapshots():
    last = {}
    first = derive("w", record(cpu_s=10, rd=0, wr=0, rx=0, tx=0), last, 100.0, 50.0, 1)
    assert first.state == "running" and first.cpu is None and first.disk_wr is None
    assert first.mem_used == 65536 * 1024          # no balloon driver: QEMU's RSS
    second = derive("w", record(cpu_s=10.9, rd=4096, wr=2_000_000, rx=3000, tx=1500),
                    last, 102.0, 52.0, 1)
    assert second.cpu == pytest.approx(45.0)         # 0.9 s of CPU in 2 s, one vCPU
    assert second.disk_rd == pytest.approx(2048)
    assert second.disk_wr == pytest.approx(1_000_000)
    assert (second.net_rx, second.net_tx) == (pytest.approx(1500), pytest.approx(750))


def test_cpu_percent_is_of_all_the_flavors_vcpus():
    last = {}
    derive("w", record(cpu_s=0, vcpus=2), last, 0, 0.0, 2)
    busy_one = derive("w", record(cpu_s=1.0, vcpus=2), last, 1, 1.0, 2)
    assert busy_one.cpu == pytest.approx(50.0)


def test_counter_going_back_gives_no_rate_and_missing_counter_keeps_its_time():
    last = {}
    derive("w", record(cpu_s=5, wr=1000), last, 0, 0.0, 1)
    restarted = derive("w", record(cpu_s=0.1, wr=10), last, 1, 1.0, 1)
    assert restarted.cpu is None and restarted.disk_wr is None
    busy = record(cpu_s=0.6, wr=10)
    del busy["block.0.wr.bytes"]                   # a domain busy with a job (NOWAIT)
    skipped = derive("w", busy, last, 2, 2.0, 1)
    assert skipped.disk_wr is None and skipped.cpu == pytest.approx(50.0)
    back = derive("w", record(cpu_s=1.1, wr=4010), last, 3, 3.0, 1)
    assert back.disk_wr == pytest.approx(2000)     # 4000 bytes since t=1, not since t=2


def test_stopped_domain_has_only_its_state_and_forgets_counters():
    last = {}
    derive("w", record(cpu_s=5), last, 0, 0.0, 1)
    stopped = derive("w", {"state": "stopped"}, last, 1, 1.0, 1)
    assert stopped == Sample("w", 1, "stopped") and last == {}


def test_counters_and_memory_shapes():
    r = record(rd=5, wr=7, rx=11, tx=13)
    assert counters(r) == {"cpu_ns": 0, "disk_rd": 1005, "disk_wr": 7, "net_rx": 11,
                           "net_tx": 13}
    assert memory_used({"balloon.available": 100_000, "balloon.unused": 40_000,
                        "balloon.rss": 1}) == 60_000 * 1024   # the guest's own figure
    assert memory_used({}) is None


def feed(monkeypatch, cloud, name, snapshots):
    """Make the bulk stats call answer `snapshots` in turn (the real answer otherwise)."""
    real = cloud.provider.domain_stats
    queue = list(snapshots)

    def stats(names=None):
        live = real(names)
        if queue:
            live[name] = queue.pop(0)
        return live
    monkeypatch.setattr(cloud.provider, "domain_stats", stats)


def test_ticks_are_written_in_batches(test_cloud, domain, monkeypatch):
    mon = test_cloud.monitor
    mon.flush_every = 3600
    mon.watch(domain, start=False)
    feed(monkeypatch, test_cloud, domain,
         [record(cpu_s=i * 0.5, wr=i * 1000, vcpus=2) for i in range(5)])
    writes = []
    real_add = test_cloud.inventory.add_samples
    monkeypatch.setattr(test_cloud.inventory, "add_samples",
                        lambda uri, rows: (writes.append(len(rows)), real_add(uri, rows)))
    ticks = []
    for _ in range(5):
        ticks.append(mon.tick())
        time.sleep(0.05)
    assert writes == []                                 # nothing written tick by tick
    assert test_cloud.inventory.samples(test_cloud.uri, domain) == []
    assert mon.flush() == 5 and writes == [5]           # one transaction for five ticks
    rows = test_cloud.inventory.samples(test_cloud.uri, domain)
    assert len(rows) == 5 and rows[0]["cpu"] is None
    # 0.5 s of CPU per tick over two vCPUs, ticks ~0.05 s apart: well above 100 % of the
    # wall time would be wrong; the derived figure must match the counters and the clock
    later = [t[domain] for t in ticks[1:]]
    assert all(s.cpu > 0 and s.disk_wr > 0 for s in later)
    assert [r["cpu"] for r in rows[1:]] == pytest.approx([s.cpu for s in later])


def test_history_draws_only_the_asked_window(ip, monkeypatch):
    from nbcloud import _magics
    cloud = _magics.api
    now = time.time()
    cloud.inventory.add_samples(cloud.uri, [
        ("mo-old", now - 3600, 99.0, 1e6, 0, 0, 0, 0),      # an hour ago: outside 10m
        ("mo-old", now - 300, 40.0, 2e6, 10, 20, 30, 40),
        ("mo-old", now - 60, 60.0, 3e6, 10, 20, 30, 40)])
    fig = ip.run_line_magic("cloud", "monitor mo-old --since 10m")
    cpu = fig.data[0]
    assert list(cpu.y) == [40.0, 60.0]                   # from SQLite, oldest first
    assert list(fig.data[1].y) == pytest.approx([2e6 / 2**20, 3e6 / 2**20], abs=0.01)
    assert "10m" in fig.layout.title.text
    with pytest.raises(UsageError, match="no samples of mo-old in the last 30s"):
        ip.run_line_magic("cloud", "monitor mo-old --since 30s")


def test_listeners_run_on_the_sampler_thread_and_a_broken_one_stops_nothing(
        test_cloud, domain):
    mon = test_cloud.monitor
    mon.interval = 0.2
    seen, errors = [], []
    ready = threading.Event()

    def good(tick):
        seen.append((threading.current_thread().name, tick[domain].state))
        if len(seen) >= 3:
            ready.set()

    def broken(tick):
        raise RuntimeError("a view that fails")

    mon.add_listener(broken, errors.append)
    mon.add_listener(good)
    mon.watch(domain)
    assert ready.wait(10), "three ticks within 10 s"
    assert seen[0] == (THREAD_NAME, "running")
    assert errors and "a view that fails" in str(errors[0])
    mon.remove_listener(good)
    mon.stop()
    assert not mon.running


def test_state_change_redraws_the_live_topology(test_cloud, domain):
    from nbcloud.ui.topology import LiveTopology
    test_cloud.inventory.put(test_cloud.uri, "instance", domain, state="running")
    topo = LiveTopology(test_cloud, widget=False)
    try:
        mon = test_cloud.monitor
        mon.watch(domain, start=False)
        mon.tick()
        mon.tick()
        before = topo.refreshes
        assert mon.state_changes == 0
        test_cloud.provider.conn.lookupByName(domain).destroy()
        assert mon.tick()[domain].state == "stopped"
        assert mon.state_changes == 1 and topo.refreshes == before + 1
    finally:
        topo.close()


def test_live_view_figure_gets_the_ticks(test_cloud, domain, monkeypatch):
    from nbcloud.ui.monitor import SERIES, LiveView
    mon = test_cloud.monitor
    mon.watch(domain, start=False)
    feed(monkeypatch, test_cloud, domain,
         [record(cpu_s=i * 0.1, rx=i * 500, vcpus=2) for i in range(4)])
    view = LiveView(mon, [domain])
    for _ in range(4):
        mon.tick()
        time.sleep(0.02)
    assert view.updates == 4
    cpu = [y for y in view.figure.data[0].y if y is not None]
    rx = view.figure.data[[f for f, *_ in SERIES].index("net_rx")].y
    assert len(cpu) == 3 and all(v > 0 for v in cpu)
    assert sum(1 for v in rx if v) == 3
    assert view.snapshot().data[0].y == view.figure.data[0].y
    # the x values are local clock times (a live widget drew epoch numbers as 1.79T), and
    # the legend names every trace, not only each instance's first
    import datetime
    xs = view.figure.data[0].x
    assert all(abs(datetime.datetime.fromisoformat(x).timestamp() - time.time()) < 60
               for x in xs), xs
    assert [t.name for t in view.figure.data] == [f"{domain} {label}"
                                                  for _f, _r, label, *_ in SERIES]
    assert all(t.showlegend is not False for t in view.figure.data)
    view.close()
    mon.tick()
    assert view.updates == 4                           # closed: no longer fed


def test_bad_monitor_lines_are_one_line(ip):
    for line, words in [("monitor mo-nope", "does not exist"),
                        ("monitor test --interval 0", "interval '0' is not allowed"),
                        ("monitor test --since ten", "duration 'ten' is not allowed"),
                        ("monitor BAD", "not allowed")]:
        with pytest.raises(UsageError) as err:
            ip.run_line_magic("cloud", line)
        assert words in str(err.value) and "\n" not in str(err.value)
    from nbcloud import _magics
    assert not _magics.api.monitor.running           # nothing started by a bad line


def test_thread_is_gone_after_unload(tmp_path):
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbcloud")
    shell.run_line_magic("config", f"CloudMagics.inventory = '{tmp_path / 'inv.sqlite'}'")
    shell.run_line_magic("cloud", "connect test:///default")
    from nbcloud import _magics
    conn = _magics.api.provider.conn
    dom = conn.defineXML(lx.domain_xml(lx.DomainDef(
        name="mo-unload", vcpus=1, memory=128 << 20, domain_type="test",
        boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(),
        metadata={"kind": "instance", "stack": "adhoc", "flavor": "m.nano"})))
    dom.create()
    try:
        shell.run_line_magic("cloud", "monitor mo-unload --interval 0.2")
        assert THREAD_NAME in [t.name for t in threading.enumerate()]
        shell.run_line_magic("unload_ext", "nbcloud")
        assert THREAD_NAME not in [t.name for t in threading.enumerate()]
    finally:
        conn = __import__("libvirt").open("test:///default")
        d = conn.lookupByName("mo-unload")
        d.destroy()
        d.undefine()


def test_one_bulk_call_asks_only_our_domains_and_survives_delete_and_redefine(
        test_cloud, domain, monkeypatch):
    conn = test_cloud.provider.conn
    calls = []
    real = conn.domainListGetStats
    monkeypatch.setattr(conn, "domainListGetStats",
                        lambda doms, *a: (calls.append([d.name() for d in doms]),
                                          real(doms, *a))[1])
    mon = test_cloud.monitor
    mon.watch(domain, start=False)
    assert mon.tick()[domain].state == "running"
    assert calls == [[domain]]            # one call, and not the foreign 'test' domain
    xml = conn.lookupByName(domain).XMLDesc(0)
    conn.lookupByName(domain).destroy()
    conn.lookupByName(domain).undefine()
    assert mon.tick()[domain].state == "deleted"
    conn.defineXML(xml).create()          # the same name again, a new domain
    assert mon.tick()[domain].state == "running"


EXIT_SCRIPT = """
import sys, time
from nbcloud.api import Cloud
from nbcloud.inventory import Inventory
from nbcloud.providers.libvirt import xml as lx
cloud = Cloud("test:///default", inventory=Inventory(sys.argv[1]))
cloud.provider.conn.defineXML(lx.domain_xml(lx.DomainDef(
    name="mo-exit", vcpus=1, memory=128 << 20, domain_type="test",
    boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(),
    metadata={"kind": "instance", "flavor": "c.nano"}))).create()
mon = cloud.monitor
mon.flush_every = 3600          # nothing written by the thread itself
mon.interval = 0.2
mon.watch("mo-exit")
while mon.ticks < 4:
    time.sleep(0.05)
print("exiting with", len(mon._buffer), "buffered", flush=True)
# no stop, no close: the interpreter exits with the sampler running, as a kernel does
"""


def test_process_exit_is_not_held_by_the_sampler_and_writes_its_buffer(tmp_path):
    import subprocess
    import sys

    from nbcloud.inventory import Inventory
    inv = tmp_path / "inv.sqlite"
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(inv)], timeout=60,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-400:]
    assert "exiting with" in done.stdout
    assert len(Inventory(inv).samples("test:///default", "mo-exit")) >= 4
