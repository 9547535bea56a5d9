"""Live migration between hosts, libvirt's own (peer to peer, the local disks copied):
the instance keeps its address, DNS name and disk while a neighbour on a third host pings
it; an aborted migration leaves it running where it was and nothing on the destination."""
from __future__ import annotations

import re
from contextlib import contextmanager

import pytest

from nbcloud.core.errors import Interrupted, InvalidSpec, NoCapacity, NotFound
from tests.hosts.conftest import conn_of, domains_on, volumes_on
from tests.hosts.test_hosts import magic

MOVER, PINGER = "mh-mover", "mh-pinger"
MARK = "nbcloud-mark-4711"


@pytest.fixture(scope="module")
def pair(cloud):
    mover = cloud.instances.create(MOVER, flavor="t.nano", host="mh-h2")
    pinger = cloud.instances.create(PINGER, flavor="t.nano", host="mh-h3")
    yield mover, pinger
    for name in (MOVER, PINGER):
        cloud.instances.delete(name)


def ctrl_c(_phase, _fraction):
    """A progress bar's call during which the user presses Ctrl-C."""
    raise KeyboardInterrupt


@contextmanager
def slow_migration(cloud, host: str, name: str):
    """Migrations of `name` capped at 1 MiB/s while inside (a tiny guest otherwise moves
    in about 2 s, and an abort asked for at once can lose the race: libvirt takes it only
    once the job has begun, so the move may be done first, and is then reported done).
    Set through nbcloud's own connection to the host: no connection of the test's own is
    left for the garbage collector to close once the hosts are gone."""
    dom = cloud.provider._host(host).conn.lookupByName(name)
    was = dom.migrateGetMaxSpeed(0)
    dom.migrateSetMaxSpeed(1, 0)
    try:
        yield
    finally:
        dom.migrateSetMaxSpeed(was, 0)


@pytest.mark.parametrize("how", [{"cancelled": lambda: True}, {"progress": ctrl_c}],
                         ids=["cancelled", "ctrl-c"])
def test_an_aborted_migration_leaves_it_where_it_was(pair, cloud, fabric, how):
    with slow_migration(cloud, "mh-h2", MOVER), \
            pytest.raises(Interrupted, match="still runs on mh-h2$"):
        cloud.hosts.migrate(MOVER, "mh-h1", **how)
    assert cloud.provider.host_of(MOVER) == "mh-h2"
    assert MOVER in domains_on(fabric, 2) and MOVER not in domains_on(fabric, 1)
    assert not [v for v in volumes_on(fabric, 1) if v.startswith(MOVER)]
    assert pair[0].ssh("hostname").strip() == MOVER
    op = cloud.ctx.inventory.operations(1)[0]
    assert (op["verb"], op["name"]) == ("migrate", MOVER)
    assert op["result"] != "ok" and "was aborted" in op["detail"], op


def test_live_migration_keeps_address_name_and_disk_while_pinged(pair, cloud, fabric):
    mover, pinger = pair
    ip = mover.ip
    mover.ssh(f"echo {MARK} > /dev/vda && sync")            # the scratch disk, raw
    pinger.ssh(f"ping -i 0.2 {MOVER} </dev/null >/tmp/ping.log 2>&1 &")
    done = cloud.hosts.migrate(MOVER, "mh-h1")
    pinger.ssh("sleep 2; kill -INT $(pidof ping); sleep 1")
    log = pinger.ssh("cat /tmp/ping.log")
    sent, got = map(int, re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received",
                                   log).groups())
    print(f"migration {done['seconds']:.1f} s, downtime {done.get('downtime_ms')} ms, "
          f"pings lost {sent - got} of {sent}")
    assert (done["from"], done["to"]) == ("mh-h2", "mh-h1")
    assert got > 0 and sent > 10
    # libvirt's witness: the domain runs on mh-h1 only, its disks left mh-h2
    assert MOVER in domains_on(fabric, 1) and MOVER not in domains_on(fabric, 2)
    assert not [v for v in volumes_on(fabric, 2) if v.startswith(MOVER)]
    assert cloud.provider.state(MOVER) == "running"
    # the guest: same address, same disk, and its name still resolves to it from mh-h3
    assert mover.ip == ip
    assert mover.ssh("head -c 17 /dev/vda") == MARK
    assert ip in pinger.ssh(f"nslookup {MOVER}", check=False)
    assert " 0% packet loss" in pinger.ssh(f"ping -c 3 -W 2 {MOVER}", check=False)
    assert cloud.ctx.inventory.get("instance", MOVER).spec["host"] == "mh-h1"
    op = cloud.ctx.inventory.operations(1)[0]
    assert (op["verb"], op["name"], op["result"]) == ("migrate", MOVER, "ok")


def filters_on(fabric, index: int) -> list[str]:
    conn = conn_of(fabric, index)
    try:
        return conn.listNWFilters()
    finally:
        conn.close()


def test_a_security_group_holds_on_another_host_and_through_a_migration(pair, cloud, fabric):
    mover, pinger = pair                        # mover on mh-h1, pinger on mh-h3
    assert cloud.provider.host_of(PINGER) == "mh-h3"
    magic(cloud, "secgroup create mh-ssh")
    magic(cloud, "secgroup rule add mh-ssh --proto tcp --port 22")
    magic(cloud, f"secgroup attach mh-ssh {PINGER}")
    try:
        for index in (3, 2):
            mine = [f for f in filters_on(fabric, index) if f.endswith(f"-inst-{PINGER}")]
            assert mine, f"no instance filter of {PINGER} on mh-h{index}"
            assert "100% packet loss" in mover.ssh(f"ping -c 2 -W 2 {PINGER}", check=False)
            pinger.close()                      # a new SSH connection: port 22 is let in
            assert pinger.ssh("hostname").strip() == PINGER
            if index == 3:
                cloud.hosts.migrate(PINGER, "mh-h2")
        assert not [f for f in filters_on(fabric, 3) if f.endswith(f"-inst-{PINGER}")]
    finally:
        magic(cloud, f"secgroup detach mh-ssh {PINGER}")
        magic(cloud, "secgroup delete mh-ssh")
    assert " 0% packet loss" in mover.ssh(f"ping -c 2 -W 2 {PINGER}", check=False)


def test_migrate_through_the_magic_and_bad_targets(pair, cloud, fabric):
    with pytest.raises(InvalidSpec, match=f"^instance {MOVER} is on host mh-h1 already$"):
        magic(cloud, f"instance migrate {MOVER} --to mh-h1")
    with pytest.raises(NotFound, match="^host 'mh-none' is not a host of this cloud"):
        magic(cloud, f"instance migrate {MOVER} --to mh-none")
    with pytest.raises(InvalidSpec):
        magic(cloud, f"instance migrate {MOVER} --to ../h2")
    # no --to: placement picks a host other than its own
    message = str(magic(cloud, f"instance migrate {MOVER}"))
    assert message.startswith(f"migrated {MOVER} from mh-h1 to mh-h"), message
    assert cloud.provider.host_of(MOVER) != "mh-h1"
    assert MOVER not in domains_on(fabric, 1)


def test_drain_moves_everything_off_and_the_host_takes_nothing_new(pair, cloud, fabric):
    host = cloud.provider.host_of(MOVER)
    index = int(host.rsplit("h", 1)[1])
    on_it = sorted(n for n in (MOVER, PINGER) if cloud.provider.host_of(n) == host)
    try:
        message = str(magic(cloud, f"host drain {host}"))
        assert message.startswith(f"drained host {host}: {on_it[0]} -> mh-h"), message
        assert not [n for n in domains_on(fabric, index) if n.startswith("mh-")]
        for name in on_it:
            assert cloud.provider.host_of(name) not in ("", host)
            assert cloud.instances.get(name).ssh("hostname").strip() == name
        row = next(r for r in magic(cloud, "host list").rows if r[0].split()[0] == host)
        assert row[2] == "up, drained"
        with pytest.raises(NoCapacity, match=f"^host {host} has no room for mh-later "
                                             rf"\(1 vCPU, 128 MiB\): {host} is drained; "):
            cloud.instances.create("mh-later", flavor="t.nano", host=host, wait=False)
    finally:
        cloud.hosts.add(host, fabric.hosts[index - 1].uri)    # it takes instances again
    row = next(r for r in magic(cloud, "host list").rows if r[0].split()[0] == host)
    assert row[2] == "up"
