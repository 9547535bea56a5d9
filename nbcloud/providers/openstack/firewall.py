"""Security groups on OpenStack: each nbcloud group is a Neutron security group
`nbcloud-sg-NAME` (tagged), its rules kept equal to the group's; a rule naming another
group becomes a rule with that group's security group as its remote, which Neutron follows
as members come and go.

nbcloud's semantics on libvirt are kept with three helper groups of its own, per project:
`nbcloud-ssh` (ssh and ping in from anywhere: nbcloud manages its servers over SSH through
their floating IPs, where libvirt's host reaches them unfiltered), `nbcloud-open` (every
port in and out: an instance in no group is not filtered, as on libvirt) and
`nbcloud-egress` (every port out: egress is open unless one of the instance's groups has
egress rules, while Neutron's groups add up); a new Neutron group's default egress rules
are removed, so a group holds exactly its rules.
"""
from __future__ import annotations

from nbcloud.core.secrules import Rule

TAG = "nbcloud"
PREFIX = "nbcloud-sg-"
SSH, OPEN, EGRESS = "nbcloud-ssh", "nbcloud-open", "nbcloud-egress"
_BASE = {
    SSH: [{"direction": "ingress", "protocol": "tcp", "port_range_min": 22,
           "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"},
          {"direction": "ingress", "protocol": "icmp", "remote_ip_prefix": "0.0.0.0/0"}],
    OPEN: [{"direction": "ingress", "remote_ip_prefix": "0.0.0.0/0"},
           {"direction": "egress", "remote_ip_prefix": "0.0.0.0/0"}],
    EGRESS: [{"direction": "egress", "remote_ip_prefix": "0.0.0.0/0"}],
}


def _key(r: dict) -> tuple:
    return (r.get("direction"), r.get("protocol"), r.get("port_range_min"),
            r.get("port_range_max"), r.get("remote_ip_prefix"), r.get("remote_group_id"))


class FirewallMixin:
    """The security-group operations of `OpenStackProvider` (providers/base.py, Firewall)."""

    def _group(self, name: str, create: bool = True):
        found = list(self.conn.network.security_groups(name=name,
                                                       project_id=self.project_id))
        if found or not create:
            return found[0] if found else None
        sg = self.conn.network.create_security_group(
            name=name, description="made by nbcloud")
        self.conn.network.set_tags(sg, [TAG])
        for rule in list(self.conn.network.security_group_rules(security_group_id=sg.id)):
            self.conn.network.delete_security_group_rule(rule)   # no default egress
        return self.conn.network.get_security_group(sg.id)

    def _set_rules(self, sg, want: list[dict]) -> None:
        """Make `sg`'s IPv4 rules exactly `want` (rules are immutable: add and delete)."""
        have = {_key(r): r for r in self.conn.network.security_group_rules(
            security_group_id=sg.id) if r.ether_type == "IPv4"}
        wanted = {_key(r): r for r in want}
        for key, rule in have.items():
            if key not in wanted:
                self.conn.network.delete_security_group_rule(rule, ignore_missing=True)
        for key, rule in wanted.items():
            if key not in have:
                self.conn.network.create_security_group_rule(
                    security_group_id=sg.id, ethertype="IPv4",
                    **{k: v for k, v in rule.items() if v is not None})

    def _base_group(self, name: str):
        sg = self._group(name)
        self._set_rules(sg, _BASE[name])
        return sg

    def instance_groups(self, groups: list[str], egress_limited: bool) -> list[str]:
        """The Neutron groups of an instance in nbcloud groups `groups` (made if missing)."""
        if not groups:
            return [self._base_group(OPEN).name, self._base_group(SSH).name]
        names = [self._base_group(SSH).name] + [PREFIX + g for g in groups]
        if not egress_limited:
            names.append(self._base_group(EGRESS).name)
        return names

    def apply_group(self, name: str, rules: list[Rule], members: dict, owner: str) -> None:
        """Group `name` with exactly `rules`; a rule naming a group is made with that
        group's Neutron group as its remote (made empty if it is not there yet). (Neutron
        groups are the project's: `owner`, the inventory's mark, is not in their names.)"""
        sg = self._group(PREFIX + name)
        want = []
        for r in rules:
            rule = {"direction": r.direction,
                    "protocol": None if r.proto == "all" else r.proto,
                    "port_range_min": r.ports[0] if r.ports else None,
                    "port_range_max": r.ports[1] if r.ports else None,
                    "remote_ip_prefix": None, "remote_group_id": None}
            if r.group:
                rule["remote_group_id"] = self._group(PREFIX + r.group).id
            else:
                rule["remote_ip_prefix"] = r.cidr or "0.0.0.0/0"
            want.append(rule)
        self._set_rules(sg, want)

    def apply_instance_groups(self, instance: str, groups: list[str],
                              egress_limited: bool, owner: str) -> None:
        """Every port of `instance` in the Neutron groups its nbcloud groups mean."""
        server = self._server(instance)
        ids = [self._group(n).id for n in self.instance_groups(groups, egress_limited)]
        for port in self.conn.network.ports(device_id=server.id):
            self.conn.network.update_port(port, security_group_ids=ids)

    def remove_group(self, name: str, owner: str) -> None:
        sg = self._group(PREFIX + name, create=False)
        if sg is not None:
            self.conn.network.delete_security_group(sg, ignore_missing=True)

    def forget_instance_filter(self, instance: str, owner: str) -> None:
        """Nothing: a server's ports, and their groups, went with it."""
