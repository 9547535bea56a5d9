"""Networks that would sit over the host's own addresses are refused: special ranges
(loopback, link-local, multicast, 'this network', reserved), prefixes libvirt cannot
serve DHCP for, and the host's own routes, addresses and gateways."""
from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess

import pytest

from nbcloud.core.errors import CloudError
from nbcloud.core.spec import InvalidSpec, NetworkSpec
from nbcloud.providers.types import HostRoute
from nbcloud.services.networks import host_conflict


@pytest.mark.parametrize("cidr, words", [
    ("127.0.0.0/24", "loopback"),
    ("127.5.0.0/16", "loopback"),
    ("169.254.0.0/24", "link-local"),
    ("224.0.0.0/24", "multicast"),
    ("239.1.0.0/16", "multicast"),
    ("0.0.0.0/24", "this network"),
    ("0.10.0.0/16", "this network"),
    ("240.0.0.0/24", "reserved"),
    ("255.255.255.0/24", "reserved"),
])
def test_special_ranges_are_refused(cidr, words):
    with pytest.raises(InvalidSpec) as err:
        NetworkSpec("sp", cidr)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "172.16.0.0/12", "10.80.0.0/15"])
def test_prefixes_libvirt_cannot_serve_are_refused_in_one_line(cidr):
    with pytest.raises(InvalidSpec) as err:
        NetworkSpec("big", cidr)
    assert "/16" in str(err.value) and "\n" not in str(err.value)


def test_the_largest_network_is_a_16():
    assert NetworkSpec("ok", "10.80.0.0/16").network.prefixlen == 16


ROUTES = [HostRoute(ipaddress.IPv4Network("192.0.2.0/24"), "a route of this host (eth0)"),
          HostRoute(ipaddress.IPv4Network("203.0.113.1/32"), "this host's gateway"),
          HostRoute(ipaddress.IPv4Network("198.51.100.7/32"), "an address of this host"),
          HostRoute(ipaddress.IPv4Network("10.200.0.0/16"), "a route of this host (wg0)")]


@pytest.mark.parametrize("cidr, words", [
    ("192.0.2.0/24", "eth0"),
    ("203.0.113.0/28", "gateway"),
    ("198.51.100.0/24", "address of this host"),
    ("10.200.3.0/24", "wg0"),
])
def test_the_hosts_routes_addresses_and_gateway_conflict(cidr, words):
    found = host_conflict(ipaddress.IPv4Network(cidr), ROUTES)
    assert found is not None and words in found.what


def test_a_free_range_does_not_conflict():
    assert host_conflict(ipaddress.IPv4Network("10.80.0.0/24"), ROUTES) is None


def _a_route_of_this_host() -> ipaddress.IPv4Network | None:
    if shutil.which("ip") is None:
        return None
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"],
                         capture_output=True, text=True, check=True).stdout
    for r in json.loads(out):
        dst = r.get("dst", "default")
        if dst == "default" or r.get("type") in ("broadcast",):
            continue
        net = ipaddress.IPv4Network(dst)
        if not net.is_loopback and 16 <= net.prefixlen <= 29:
            return net
    return None


def test_the_provider_refuses_a_network_over_a_route_of_this_host(test_cloud):
    """On test:///default (a daemon in this very process) the host is this machine: a
    network over one of its own routes, read live, is refused and nothing is made."""
    route = _a_route_of_this_host()
    if route is None:
        pytest.skip("this network namespace has no route of a size a network can have")
    assert any(r.network == route for r in test_cloud.provider.host_routes())
    with pytest.raises(CloudError) as err:
        test_cloud.networks.create("sec-hostnet", str(route))
    assert "this host" in str(err.value) and "\n" not in str(err.value)
    assert "sec-hostnet" not in test_cloud.provider.network_names()
    assert test_cloud.ctx.inventory.get("network", "sec-hostnet") is None
