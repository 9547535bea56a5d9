"""After a host restart: start again, from the inventory, what ran before it.

libvirt keeps definitions, not what ran: it autostarts networks and pools once per boot
(not when its daemon restarts), starts no nbcloud instance (none is marked autostart:
the inventory, not libvirt, says which should run), and knows nothing of nbcloud's
host-side pieces, the nft rules of port forwards and one HAProxy per balancer. `restore`
puts each back in the order they depend on one another; the host agent runs it when it
starts (nbcloud/agent/), and `%cloud drift` names whatever is still missing
(plan/runtime.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from nbcloud.core.errors import CloudError

if TYPE_CHECKING:
    from nbcloud.services.catalog import Services


def restore(cloud: Services) -> tuple[list[str], list[str]]:
    """Start what the inventory says runs: storage pools, networks, instances, port
    forwards, DNS records and balancers. Returns (what was done, the instances started,
    which are booting: `hold_cpu_shares` finishes them). One failure is reported in the
    list and does not stop the rest."""
    inv, provider = cloud.inventory, cloud.provider
    done: list[str] = []

    def attempt(what: str, fn, *args):
        try:
            return fn(*args)
        except CloudError as exc:
            done.append(f"could not {what}: {exc}")
            return None

    pools = set(provider.own_pools()) | {r.name for r in inv.all("pool")}
    for name in attempt("start storage pools", provider.start_pools, sorted(pools)) or ():
        done.append(f"started storage pool {name}")
    # networks before what runs on them: instances, forwards, DNS and balancers need
    # their bridges (the default one is nbcloud's even when no record names it)
    nets = {r.name for r in inv.all("network")} | {provider.default_network}
    for name in sorted(n for n in nets if n in provider.network_names()):
        if attempt(f"start network {name}", cloud.networks.start, name):
            done.append(f"started network {name}")
    started = []
    for r in inv.all("instance"):
        if r.state == "running" and provider.exists(r.name) and \
                provider.state(r.name) != "running":
            if attempt(f"start instance {r.name}", _start, cloud, r.name) is not None:
                started.append(r.name)
                done.append(f"started instance {r.name}")
    for name in attempt("restore the port forwards", cloud.floating.restore) or ():
        done.append(f"restored port forward {name}")
    for net in sorted({r.spec["network"] for r in inv.all("dns")}):
        for change in attempt(f"refresh the DNS records of {net}", cloud.dns.refresh,
                              net) or ():
            done.append(f"dns on {net}: {change}")
    for r in inv.all("loadbalancer"):
        if attempt(f"start load balancer {r.name}", cloud.lbs.ensure, r.name):
            done.append(f"started load balancer {r.name}")
    return done, started


def _start(cloud: Services, name: str) -> str:
    cloud.instances.get(name).start(wait=False)
    return name


def hold_cpu_shares(cloud: Services, names: list[str]) -> list[str]:
    """Wait until each of `names` answers SSH, then hold it to its flavor's CPU share
    (shared-CPU flavors boot at full speed, as at create). Returns those that did not
    answer."""
    silent = []
    for name in names:
        try:
            inst = cloud.instances.get(name)
            inst.wait_ready()
            inst.apply_cpu_share()
        except (CloudError, TimeoutError, OSError):
            silent.append(name)
    return silent
