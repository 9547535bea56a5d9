"""Security groups on libvirt: each group compiles to an nwfilter, each member instance to
a filter that references its groups' filters, pointed at by every interface it has.

Every NIC nbcloud makes on a libvirt network carries `nbcloud-antispoof` with the NIC's
address as parameter IP: what it sends must come from its own MAC, IPv4 from its own
address (or 0.0.0.0 asking for DHCP), ARP claiming its own MAC and address. It checks
what libvirt's no-mac-spoofing, no-ip-spoofing and no-arp-spoofing check, in one filter of
eight ebtables rules: libvirt instantiates filters when a domain starts, with one ebtables
or iptables run per rule and chain, and that cost lands on every create (measured, per
interface: +0.5 s for this filter, +0.9 s for those three, +1.5-2 s for clean-traffic;
bench/antispoof.py).

Filter names carry the inventory's mark (`Records.owner`), so that two inventories on one
daemon never rewrite each other's filters: group G compiles to `nbcloud-OWNER-sg-G`, and
each instance that is a member of any group gets `nbcloud-OWNER-inst-NAME`, which
references `nbcloud-antispoof`, then its groups' filters, between a fixed head
(established traffic, DHCP, DNS to the network's own resolver) and a fixed tail (drop
every other ingress; egress is open unless one of its groups has egress rules). Every
interface of the instance carries `<filterref filter='nbcloud-OWNER-inst-NAME'>` with its
own address; an instance in no group has plain `nbcloud-antispoof` again. An interface
filtered by anything else (another inventory's filter, one made by hand) is left alone:
the change is refused.

A rule naming another group compiles to one rule per address of that group's current
members: anti-spoofing is what makes "from group G" mean G's members.
"""
from __future__ import annotations

import ipaddress

from nbcloud.core.errors import CloudError, NotFound, NotManaged
from nbcloud.core.secrules import Rule
from nbcloud.providers.libvirt.nwfilters import FilterDef, FilterRule
from nbcloud.providers.libvirt.xml import BASE_FILTER

LEGACY_INSTANCE_PREFIX = "nbcloud-inst-"   # filters of an older nbcloud, before marks


def group_filter(owner: str, group: str) -> str:
    """The filter name of group `group` of the inventory marked `owner`."""
    return f"nbcloud-{owner}-sg-{group}"


def instance_filter(owner: str, instance: str) -> str:
    """The filter name of member instance `instance` of the inventory marked `owner`."""
    return f"nbcloud-{owner}-inst-{instance}"


def antispoof_filter() -> FilterDef:
    """`nbcloud-antispoof` (see the module): in the root chain, ordered by priority; a
    'return' ends the filter for that frame (accepted as far as ebtables goes: the
    iptables rules of security groups still apply)."""
    out = "out"
    dhcp = {"srcipaddr": "0.0.0.0", "dstipaddr": "255.255.255.255", "protocol": "udp",
            "srcportstart": "68", "dstportstart": "67"}
    return FilterDef(BASE_FILTER, (
        FilterRule("drop", out, "mac", {"match": "no", "srcmacaddr": "$MAC"}, -800),
        FilterRule("return", out, "ip", dhcp, -710),
        FilterRule("return", out, "ip", {"srcipaddr": "$IP"}, -700),
        FilterRule("drop", out, "ip", {}, -690),
        FilterRule("drop", out, "arp", {"match": "no", "arpsrcmacaddr": "$MAC"}, -680),
        FilterRule("return", out, "arp", {"arpsrcipaddr": "$IP"}, -670),
        FilterRule("return", out, "arp", {"arpsrcipaddr": "0.0.0.0"}, -670),  # probes
        FilterRule("drop", out, "arp", {}, -660),
    ))


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
                  members: dict[str, dict[str, list[str]]], owner: str) -> FilterDef:
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
    return FilterDef(group_filter(owner, name), tuple(out))


def compile_instance(name: str, groups: list[str], egress_limited: bool,
                     resolvers: list[str], owner: str) -> FilterDef:
    """The filter on every interface of instance `name`, a member of `groups`, whose
    networks' DNS resolvers (their gateways) are `resolvers`."""
    established = {"state": "ESTABLISHED,RELATED"}
    head = [
        # replies to what either side started (the conntrack state)
        FilterRule("accept", "in", "all", established, priority=100),
        FilterRule("accept", "out", "all", established, priority=100),
        # what an instance needs to work: its DHCP lease (a reply may be broadcast, which
        # conntrack does not tie to the request)
        FilterRule("accept", "in", "udp", {"srcportstart": "67", "dstportstart": "68"},
                   priority=110),
        FilterRule("accept", "out", "udp", {"srcportstart": "68", "dstportstart": "67"},
                   priority=110),
    ]
    # and DNS queries to its networks' own resolvers only (an egress-limited group must
    # not leave port 53 open to the world); their replies are ESTABLISHED (a rule for
    # "source port 53" would let anyone in who picks it)
    for ip in sorted(set(resolvers)):
        head += [FilterRule("accept", "out", proto, {"dstipaddr": ip, "dstportstart": "53"},
                            priority=110) for proto in ("udp", "tcp")]
    tail = [FilterRule("drop", "in", "all", priority=1000)]
    if egress_limited:
        tail.append(FilterRule("drop", "out", "all", priority=1000))
    else:
        tail.append(FilterRule("accept", "out", "all", priority=900))
    return FilterDef(instance_filter(owner, name), tuple(head + tail),
                     (BASE_FILTER,) + tuple(group_filter(owner, g) for g in groups))


class FirewallMixin:
    """The security-group operations of `LibvirtProvider` (providers/base.py, Firewall)."""

    def ensure_antispoof_filter(self) -> bool:
        """Define `nbcloud-antispoof` where it is missing or differs (every NIC nbcloud
        makes references it: a domain does not start without it); False where the daemon
        has no network filters (the test driver, a session daemon)."""
        want = antispoof_filter()
        try:
            have = self.nwfilter(BASE_FILTER)
        except NotFound:
            have = None
        except CloudError:
            return False
        if have is not None and have.rules == want.rules and have.refs == want.refs:
            return True
        try:
            self.define_nwfilter(want)
        except CloudError:
            return False
        return True

    def apply_group(self, name: str, rules: list[Rule],
                    members: dict[str, dict[str, list[str]]], owner: str) -> None:
        """Define (or redefine, live on every interface) group `name`'s filter.
        `members` is group -> {instance: [addresses]}, for rules naming a group."""
        self.define_nwfilter(compile_group(name, rules, members, owner))

    def apply_instance_groups(self, instance: str, groups: list[str],
                              egress_limited: bool, owner: str) -> None:
        """Filter `instance`'s interfaces by `groups`; with none, give them back plain
        anti-spoofing and remove the instance's filter. Refused, before anything is
        defined, where an interface is filtered by a filter this inventory did not make;
        with no group left, such interfaces are left as they are."""
        mine = instance_filter(owner, instance)

        def ours(current: str) -> bool:
            return current in (BASE_FILTER, mine, LEGACY_INSTANCE_PREFIX + instance)
        if not groups:
            if self.exists(instance):
                try:
                    self.set_interface_filter(instance, BASE_FILTER, self.nic_addresses(
                        instance), allowed=ours)
                except NotManaged:
                    pass            # another's filter: not ours to take off
            self.undefine_nwfilter(mine)
            return
        self.check_interface_filters(instance, mine, ours)
        meta = self.metadata(instance)
        resolvers = [self.net_authority.network(n).gateway   # another host's, if it spans
                     for n in self.nic_addresses(instance, meta)]
        self.define_nwfilter(compile_instance(instance, groups, egress_limited, resolvers,
                                              owner))
        self.set_interface_filter(instance, mine, self.nic_addresses(instance, meta),
                                  allowed=ours)

    def nic_addresses(self, instance: str, meta: dict[str, str] | None = None
                       ) -> dict[str, str]:
        """network -> the instance's address there (nbcloud's metadata `ips`)."""
        meta = meta if meta is not None else self.metadata(instance)
        pairs = (p.partition("=") for p in meta.get("ips", "").split(","))
        return {net: ip for net, _, ip in pairs if net and ip and net != "user"}

    def remove_group(self, name: str, owner: str) -> None:
        self.undefine_nwfilter(group_filter(owner, name))

    def forget_instance_filter(self, instance: str, owner: str) -> None:
        """Remove the filter of an instance that is gone."""
        self.undefine_nwfilter(instance_filter(owner, instance))
