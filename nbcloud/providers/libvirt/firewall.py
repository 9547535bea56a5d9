"""Security groups on libvirt: each group compiles to an nwfilter, each member instance to
a filter that references its groups' filters, pointed at by every interface it has.

Each group G compiles to one filter `nbcloud-sg-G`; each instance that is a member of any
group gets a filter `nbcloud-inst-NAME` that references its groups' filters between a
fixed head (established traffic, DHCP and DNS replies) and a fixed tail (drop every other
ingress; egress is open unless one of its groups has egress rules), and every interface
of the instance carries `<filterref filter='nbcloud-inst-NAME'/>`. ARP is not IP, so it
passes untouched. A rule naming another group compiles to one rule per address of that
group's current members.
"""
from __future__ import annotations

import ipaddress

from nbcloud.core.secrules import Rule
from nbcloud.providers.libvirt.nwfilters import FilterDef, FilterRule

GROUP_PREFIX = "nbcloud-sg-"
INSTANCE_PREFIX = "nbcloud-inst-"


def _remote_matches(rule: Rule, members: dict[str, list[str]]) -> list[dict[str, str]]:
    """The address match attributes of `rule`: one dict per remote network."""
    side = "src" if rule.direction == "ingress" else "dst"
    if rule.group:
        addrs = sorted({ip for ips in members.get(rule.group, {}).values() for ip in ips})
        return [{f"{side}ipaddr": ip, f"{side}ipmask": "32"} for ip in addrs]
    if rule.cidr:
        net = ipaddress.IPv4Network(rule.cidr)
        return [{f"{side}ipaddr": str(net.network_address),
                 f"{side}ipmask": str(net.prefixlen)}]
    return [{}]


def compile_group(name: str, rules: list[Rule],
                  members: dict[str, dict[str, list[str]]]) -> FilterDef:
    """The filter of group `name`. `members` is group -> {instance: [addresses]}."""
    out = []
    for rule in rules:
        base: dict[str, str] = {}
        if rule.ports:
            base["dstportstart"] = str(rule.ports[0])
            base["dstportend"] = str(rule.ports[1])
        for remote in _remote_matches(rule, members):  # type: ignore[arg-type]
            out.append(FilterRule("accept", "in" if rule.direction == "ingress" else "out",
                                  rule.proto, {**base, **remote}, priority=500))
    return FilterDef(GROUP_PREFIX + name, tuple(out))


def compile_instance(name: str, groups: list[str], egress_limited: bool) -> FilterDef:
    """The filter on every interface of instance `name`, a member of `groups`."""
    established = {"state": "ESTABLISHED,RELATED"}
    head = [
        # replies to what either side started (the conntrack state)
        FilterRule("accept", "in", "all", established, priority=100),
        FilterRule("accept", "out", "all", established, priority=100),
        # what an instance needs to work: its DHCP lease (a reply may be broadcast, which
        # conntrack does not tie to the request) and DNS queries, whose replies are
        # ESTABLISHED (a rule for "source port 53" would let anyone in who picks it)
        FilterRule("accept", "in", "udp", {"srcportstart": "67", "dstportstart": "68"},
                   priority=110),
        FilterRule("accept", "out", "udp", {"srcportstart": "68", "dstportstart": "67"},
                   priority=110),
        FilterRule("accept", "out", "udp", {"dstportstart": "53"}, priority=110),
        FilterRule("accept", "out", "tcp", {"dstportstart": "53"}, priority=110),
    ]
    tail = [FilterRule("drop", "in", "all", priority=1000)]
    if egress_limited:
        tail.append(FilterRule("drop", "out", "all", priority=1000))
    else:
        tail.append(FilterRule("accept", "out", "all", priority=900))
    return FilterDef(INSTANCE_PREFIX + name, tuple(head + tail),
                     tuple(GROUP_PREFIX + g for g in groups))


class FirewallMixin:
    """The security-group operations of `LibvirtProvider` (providers/base.py, Firewall)."""

    def apply_group(self, name: str, rules: list[Rule],
                    members: dict[str, dict[str, list[str]]]) -> None:
        """Define (or redefine, live on every interface) group `name`'s filter.
        `members` is group -> {instance: [addresses]}, for rules naming a group."""
        self.define_nwfilter(compile_group(name, rules, members))

    def apply_instance_groups(self, instance: str, groups: list[str],
                              egress_limited: bool) -> None:
        """Filter `instance`'s interfaces by `groups`; with none, take its filter off
        them and remove it."""
        if not groups:
            if self.exists(instance):
                self.set_interface_filter(instance, None)
            self.undefine_nwfilter(INSTANCE_PREFIX + instance)
            return
        self.define_nwfilter(compile_instance(instance, groups, egress_limited))
        self.set_interface_filter(instance, INSTANCE_PREFIX + instance)

    def remove_group(self, name: str) -> None:
        self.undefine_nwfilter(GROUP_PREFIX + name)

    def forget_instance_filter(self, instance: str) -> None:
        """Remove the filter of an instance that is gone."""
        self.undefine_nwfilter(INSTANCE_PREFIX + instance)
