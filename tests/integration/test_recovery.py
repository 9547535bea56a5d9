"""Recovery on the real daemon: a stack applied, its inventory overwritten with garbage;
the next open moves the file aside, rebuilds the rows from nbcloud's metadata on the
libvirt objects, and re-applying the unchanged cell changes nothing."""
from __future__ import annotations

import os

from nbcloud.api import Cloud
from nbcloud.core.errors import NotFound
from nbcloud.inventory import Inventory

STACK = "rc-stack"
NET, CIDR = "rc-net", "10.76.0.0/24"
BODY = f"""
network:
  {NET}: {{cidr: {CIDR}, mode: isolated}}
volume:
  rc-vol: {{size: 1G}}
instance:
  rc-web: {{image: tiny, flavor: t.nano, network: [{NET}], volume: [rc-vol]}}
"""


def _cleanup(c: Cloud) -> None:
    """Whatever a failed test left of this module's (only its own names)."""
    c.stacks.destroy(STACK)
    for name in ("rc-vol",):
        try:
            c.volumes.delete(name)
        except NotFound:
            pass
    if NET in c.provider.network_names():
        c.networks.delete(NET)


def test_garbage_inventory_is_rebuilt_and_the_stack_converges(cloud, tmp_path):
    path = tmp_path / "inv.sqlite"
    first = Cloud(cloud.uri, inventory=Inventory(path))
    try:
        assert len(first.stacks.apply(STACK, BODY).actions) == 3
    finally:
        first.inventory.close()
        first.close()
    for extra in ("-wal", "-shm"):
        if os.path.exists(f"{path}{extra}"):
            os.remove(f"{path}{extra}")
    path.write_bytes(os.urandom(16384))

    again = Cloud(cloud.uri, inventory=Inventory(path))
    try:
        assert again.inventory.rebuilt and again.recovery[0].startswith(
            "the inventory was corrupt")
        rows = {(r.kind, r.name): r for r in again.inventory.resources(again.uri)}
        web = rows[("instance", "rc-web")]
        assert (web.stack, web.spec["volumes"], web.state) == (STACK, ["rc-vol"], "running")
        vol = rows[("volume", "rc-vol")]
        assert (vol.state, vol.spec["attached_to"], vol.spec["tier"]) == \
            ("attached", "rc-web", "ssd")
        assert rows[("network", NET)].spec["cidr"] == CIDR
        assert again.stacks.apply(STACK, BODY).actions == []     # nothing to do
        assert {r.stack for r in again.inventory.resources(again.uri)
                if r.name in (NET, "rc-vol", "rc-web")} == {STACK}  # claimed back
        plan = again.stacks.destroy(STACK)
        assert [(a.op, a.kind, a.name) for a in plan.actions] == [
            ("delete", "instance", "rc-web"), ("delete", "volume", "rc-vol"),
            ("delete", "network", NET)]
        assert not again.provider.exists("rc-web")
        assert NET not in again.provider.network_names()
    finally:
        _cleanup(again)
        again.close()
