"""A guest of its own on a network of its own, for tests that change what the host
forwards or filters; and the SSH banner as a witness that a port leads to a guest."""
from __future__ import annotations

import socket


def banner(host: str, port: int, timeout: float = 5.0) -> bytes:
    """The first bytes a TCP server at host:port sends (an SSH banner)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        return s.recv(64)


def fresh_guest(cloud, name: str, network: str, cidr: str, flavor: str = "t.nano"):
    """Yield a new instance `name` on network `network` (made if missing); remove both
    afterwards. A leftover of an earlier run (its forwards too) is removed first."""
    for f in cloud.floating.list():
        if f.instance == name:
            cloud.floating.delete(f.name)
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    if network not in cloud.provider.network_names():
        cloud.networks.create(network, cidr)
    yield cloud.instances.create(name, image="tiny", flavor=flavor, network=network)
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    cloud.networks.delete(network)


def group_filter_of(cloud, group: str) -> str:
    """The nwfilter name of security group `group` of `cloud`'s inventory."""
    from nbcloud.providers.libvirt.firewall import group_filter
    return group_filter(cloud.ctx.inventory.owner, group)


def instance_filter_of(cloud, instance: str) -> str:
    """The nwfilter name of member instance `instance` of `cloud`'s inventory."""
    from nbcloud.providers.libvirt.firewall import instance_filter
    return instance_filter(cloud.ctx.inventory.owner, instance)
