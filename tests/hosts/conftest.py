"""The hosts tier: one cloud of three libvirt hosts on this machine (fabric.py), real TCG
guests on each. Run by scripts/hosts-tier.sh (`make test` does), which gives this
process a network namespace of its own and a scratch ~/.ssh.

The cloud is opened on the first host (`qemu+ssh://root@10.99.0.1/system`, the home host:
its networks' DHCP and DNS), and the two others are added to it as a user would, with
`cloud.hosts.add`. The tiny image is put on the home host from this machine's image pool
(`make host` built it); nbcloud copies it to the other hosts itself when a guest lands
there. Every host runs guests under TCG: KVM is not usable on this machine (the shared
daemon's probe found so), and a probe boot per host would only cost time, so each host's
accelerator is recorded as `tcg` in the tier's own accelerator cache.
"""
from __future__ import annotations

import gc

import pytest

from tests.hosts.fabric import IMAGES, Fabric, open_cloud

PREFIX = "mh-"


@pytest.fixture(scope="session")
def fabric(tmp_path_factory):
    """Three lab servers (libvirtd + dropbear each), joined by the fabric bridge."""
    if not (IMAGES / "tiny.json").exists():
        pytest.fail(f"no tiny image in {IMAGES}: run the tier through `make test` (its "
                    "`host` step builds it)", pytrace=False)
    f = Fabric(tmp_path_factory.mktemp("fabric"))
    try:
        f.up()
    except Exception:
        f.down()
        raise
    yield f
    # libvirt objects still held by reference cycles (an exception's frames keep the
    # domains a test raised past) close their connections when collected: while the
    # daemons run, not afterwards, when a close to a daemon gone waits without end
    gc.collect()
    f.down()


@pytest.fixture(scope="session")
def cloud(fabric, tmp_path_factory):
    """The cloud of the three hosts: opened on the first, the two others added."""
    c = open_cloud(fabric, tmp_path_factory.mktemp("hosts-inv") / "inv.sqlite")
    yield c
    c.close()


def conn_of(fabric, index: int):
    """A libvirt connection of our own to host `index` (1-based), as a witness that does
    not go through nbcloud."""
    import libvirt
    return libvirt.open(fabric.hosts[index - 1].uri)


def volumes_on(fabric, index: int, pool: str = "nbcloud") -> list[str]:
    """The volumes of `pool` on host `index`, straight from libvirt."""
    conn = conn_of(fabric, index)
    try:
        p = conn.storagePoolLookupByName(pool)
        p.refresh(0)
        return sorted(p.listVolumes())
    finally:
        conn.close()


def domains_on(fabric, index: int) -> list[str]:
    """The domains host `index`'s daemon has, straight from libvirt."""
    conn = conn_of(fabric, index)
    try:
        return sorted(d.name() for d in conn.listAllDomains(0))
    finally:
        conn.close()
