"""A stack as an OpenStack Heat (HOT) template: what `%cloud export heat` writes.

The template declares what the stack's cell declares, with OpenStack's own resources, so
that `openstack stack create -t FILE NAME` makes the same thing without nbcloud:

- a network: `OS::Neutron::Net` and an IPv4 `OS::Neutron::Subnet`; `nat` adds a router
  with the external network (parameter `external_network`) as its gateway and an interface
  on the subnet; `isolated` has none (`routed` and `open` have no tenant equivalent and are
  refused);
- a volume: `OS::Cinder::Volume` of its tier's volume type, in whole GiB (Cinder's unit);
- a security group: `OS::Neutron::SecurityGroup` with its rules (a rule naming the group
  itself is a remote-group rule in it; one naming another group an
  `OS::Neutron::SecurityGroupRule` of its own, as two groups may name each other); as
  nbcloud does, every server also joins `STACK-ssh` (SSH and ping
  from anywhere), and a server in no group joins `STACK-open` (every port) instead, so it
  is unfiltered as on libvirt; egress stays open unless a group has egress rules (Heat
  removes Neutron's default egress rules exactly then);
- an instance (NAME-1..N with `count`): a port per network, an `OS::Nova::Server` with a
  config drive, the login key pair (parameter `key_name`) and the cell's user data, a
  floating IP when its first network leads outside (a `nat` network of the stack, or the
  default network), and an `OS::Cinder::VolumeAttachment` per volume.

Load balancers (Octavia) and instance pools (nbcloud's own scaling) are not exported: the
template's first lines say which were left out.
"""
from __future__ import annotations

import time

import yaml

from nbcloud.core.errors import Unsupported
from nbcloud.core.secrules import parse_rule_text
from nbcloud.core.stackfile import Stack

GIB = 1 << 30
VERSION = "2018-08-31"     # Rocky's HOT: every resource used here; Zed reads it


def _ref(kind: str, name: str) -> dict:
    return {"get_resource": f"{kind}-{name}"}


def _network_ref(stack: Stack, name: str):
    """The stack's own network as a resource reference, any other by its name."""
    return _ref("net", name) if name in stack.networks else name


def template(stack: Stack, *, default_network: str = "nbcloud") -> tuple[dict, list[str]]:
    """The HOT template of `stack` and the sections left out (one line each)."""
    res: dict[str, dict] = {}
    left_out = [f"loadbalancer {n}: OpenStack's balancers are Octavia's; declare one "
                "there" for n in stack.loadbalancers]
    left_out += [f"ipool {n}: nbcloud's own instance pool; its members are not in the "
                 "template" for n in stack.ipools]
    outside = {default_network}
    for name, net in stack.networks.items():
        if net.mode not in ("nat", "isolated"):
            raise Unsupported(f"network {name!r} is {net.mode}: a Heat template has nat "
                              "(a router to the external network) or isolated networks")
        res[f"net-{name}"] = {"type": "OS::Neutron::Net", "properties": {"name": name}}
        res[f"subnet-{name}"] = {"type": "OS::Neutron::Subnet", "properties": {
            "name": name, "network": _ref("net", name), "cidr": str(net.network),
            "ip_version": 4}}
        if net.mode == "nat":
            outside.add(name)
            res[f"router-{name}"] = {"type": "OS::Neutron::Router", "properties": {
                "name": f"{stack.name}-{name}",
                "external_gateway_info": {"network": {"get_param": "external_network"}}}}
            res[f"router-{name}-interface"] = {"type": "OS::Neutron::RouterInterface",
                                               "properties": {
                                                   "router": _ref("router", name),
                                                   "subnet": _ref("subnet", name)}}
    for name, vol in stack.volumes.items():
        res[f"volume-{name}"] = {"type": "OS::Cinder::Volume", "properties": {
            "name": name, "size": max(1, -(-vol.capacity // GIB)), "volume_type": vol.tier}}
    for name, group in stack.secgroups.items():
        rules = []
        for i, r in enumerate(parse_rule_text(t) for t in group.rules):
            rule = _rule(r)
            if r.group and r.group != name:
                # a rule naming another group is a resource of its own: two groups that
                # name each other would be a circle of dependencies inside their rules
                del rule["remote_mode"]
                rule.update(security_group=_ref("secgroup", name),
                            remote_group=_ref("secgroup", r.group))
                res[f"secgroup-{name}-rule-{i}"] = {"type": "OS::Neutron::SecurityGroupRule",
                                                     "properties": rule}
            else:
                rules.append(rule)
        res[f"secgroup-{name}"] = {"type": "OS::Neutron::SecurityGroup", "properties": {
            "name": name, "rules": rules}}
    if stack.instances:
        res["secgroup-nbcloud-ssh"] = {"type": "OS::Neutron::SecurityGroup", "properties": {
            "name": f"{stack.name}-ssh", "description": "SSH and ping from anywhere",
            "rules": [_rule_of("ingress", "tcp", 22, 22), _rule_of("ingress", "icmp")]}}
    if any(not d.secgroups for d in stack.instances.values()):
        res["secgroup-nbcloud-open"] = {"type": "OS::Neutron::SecurityGroup", "properties": {
            "name": f"{stack.name}-open", "description": "in no group: unfiltered",
            "rules": [_rule_of("ingress", None)]}}
    for decl in stack.instances.values():
        groups = [_ref("secgroup", g) for g in decl.secgroups] or \
            [_ref("secgroup", "nbcloud-open")]
        groups.insert(0, _ref("secgroup", "nbcloud-ssh"))
        for member in decl.members():
            _server(res, stack, member, decl, groups, member.networks[0] in outside)
    doc = {"heat_template_version": VERSION,
           "description": f"nbcloud stack {stack.name}, exported "
                          f"{time.strftime('%Y-%m-%d %H:%M')}",
           "parameters": {
               "key_name": {"type": "string", "default": "default",
                            "description": "the Nova key pair the servers log in with"},
               "external_network": {"type": "string", "default": "public",
                                    "description": "where nat networks' routers lead"}},
           "resources": res}
    return doc, left_out


def _server(res: dict, stack: Stack, member, decl, groups: list, floating: bool) -> None:
    name = member.name
    ports = []
    for net in member.networks:
        port = f"port-{name}-{net}"
        res[port] = {"type": "OS::Neutron::Port", "properties": {
            "name": f"{name}-{net}", "network": _network_ref(stack, net),
            "security_groups": groups}}
        if net in stack.networks:
            res[port]["depends_on"] = [f"subnet-{net}"]
        ports.append({"port": {"get_resource": port}})
    props = {"name": name, "image": member.image, "flavor": member.flavor,
             "key_name": {"get_param": "key_name"}, "config_drive": True,
             "networks": ports}
    if member.user_data:
        props.update(user_data_format="RAW", user_data=member.user_data)
    res[f"server-{name}"] = {"type": "OS::Nova::Server", "properties": props}
    first = member.networks[0]
    if floating:
        res[f"fip-{name}"] = {"type": "OS::Neutron::FloatingIP", "properties": {
            "floating_network": {"get_param": "external_network"},
            "port_id": {"get_resource": f"port-{name}-{first}"}}}
        if first in stack.networks:
            res[f"fip-{name}"]["depends_on"] = [f"router-{first}-interface"]
    for vol in decl.volumes:
        res[f"attach-{name}-{vol}"] = {"type": "OS::Cinder::VolumeAttachment", "properties": {
            "instance_uuid": _ref("server", name), "volume_id": _ref("volume", vol)}}


def _rule_of(direction: str, proto: str | None, low: int | None = None,
             high: int | None = None, remote: str = "0.0.0.0/0") -> dict:
    rule = {"direction": direction, "ethertype": "IPv4", "remote_ip_prefix": remote}
    if proto is not None:
        rule["protocol"] = proto
    if low is not None:
        rule.update(port_range_min=low, port_range_max=high)
    return rule


def _rule(r) -> dict:
    """One of nbcloud's rules as a Neutron security group rule of the template."""
    proto = None if r.proto == "all" else r.proto
    low, high = r.ports if r.ports else (None, None)
    rule = _rule_of(r.direction, proto, low, high, r.cidr or "0.0.0.0/0")
    if r.group:   # its own group (Heat's default remote group), or the caller names it
        del rule["remote_ip_prefix"]
        rule["remote_mode"] = "remote_group_id"
    return rule


def text(stack: Stack, *, default_network: str = "nbcloud") -> str:
    """The template as YAML, after comment lines naming what was left out."""
    doc, left_out = template(stack, default_network=default_network)
    head = [f"# {line}" for line in [f"nbcloud stack {stack.name} as a Heat template: "
                                     f"openstack stack create -t FILE {stack.name}"]
            + [f"not exported: {w}" for w in left_out]]
    return "\n".join(head) + "\n" + yaml.safe_dump(doc, sort_keys=False, width=96)
