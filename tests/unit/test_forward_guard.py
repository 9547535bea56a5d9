"""Port forwards: the loopback guard in nbcloud's nft table, route_localnet only for
forwards from loopback, host ports a forward may not take, one name per forward.
(The guard against a real hostile guest: tests/integration/test_host_loopback_guard.py.)"""
from __future__ import annotations

import socket

import pytest

from nbcloud.core.errors import InvalidSpec
from nbcloud.providers.libvirt.forwards import (
    GUARD,
    check_host_port,
    needs_loopback,
    table_commands,
)
from nbcloud.providers.types import Forward
from nbcloud.services.floating import forward_name


def test_the_table_carries_the_loopback_guard_before_conntrack():
    cmds = table_commands()
    chain = next(c["add"]["chain"] for c in cmds
                 if "chain" in c.get("add", {}) and c["add"]["chain"]["name"] == GUARD)
    assert (chain["type"], chain["hook"], chain["prio"]) == ("filter", "prerouting", -300)
    # emptied then filled in the same transaction: applying twice never doubles it
    kinds = [next(iter(c)) for c in cmds if GUARD in str(c)]
    assert kinds == ["add", "flush", "add", "add"]
    rules = [c["add"]["rule"] for c in cmds if "rule" in c.get("add", {})]
    assert {r["chain"] for r in rules} == {GUARD}
    for rule, field in zip(rules, ("daddr", "saddr")):
        not_lo, loopback, verdict = rule["expr"]
        assert not_lo["match"] == {"op": "!=", "left": {"meta": {"key": "iifname"}},
                                   "right": "lo"}
        assert loopback["match"]["left"]["payload"]["field"] == field
        assert loopback["match"]["right"] == {"prefix": {"addr": "127.0.0.0", "len": 8}}
        assert verdict == {"drop": None}
        assert not rule["comment"].startswith("nbcloud:")  # never taken for a forward


@pytest.mark.parametrize("address, needed", [
    ("", True), ("127.0.0.1", True), ("127.3.0.1", True), ("10.77.0.1", False),
])
def test_route_localnet_only_for_forwards_from_loopback(address, needed):
    assert needs_loopback(Forward("f", "web", 22, 2222, address, "10.77.0.5")) is needed


def test_tcp_and_udp_forwards_of_one_port_have_their_own_names():
    assert forward_name("web", 8053, "tcp") == "web-8053"
    assert forward_name("web", 8053, "udp") == "web-8053-udp"


@pytest.mark.parametrize("port", [1, 22, 53, 67, 80, 443, 1023])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_ports_below_1024_are_the_hosts(port, proto):
    with pytest.raises(InvalidSpec, match="below 1024") as err:
        check_host_port(port, "", proto)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_a_port_a_host_service_holds_is_refused(proto):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as busy:
        busy.bind(("127.0.0.1", 0))   # on loopback only: a forward from any address
        if proto == "tcp":            # would still capture its connections
            busy.listen(1)
        port = busy.getsockname()[1]
        for address in ("", "127.0.0.1"):
            with pytest.raises(InvalidSpec, match="listens"):
                check_host_port(port, address, proto)
    assert check_host_port(port, "", proto) == port     # free again


def test_host_ports_are_checked_by_the_libvirt_provider(test_cloud):
    with pytest.raises(InvalidSpec, match="below 1024"):
        test_cloud.provider.forward_address("web", 22, 22, "", set(), "tcp")
    assert test_cloud.provider.forward_address("web", 22, 24555, "", set(), "udp") == \
        ("", 24555)
