"""A stack as a Heat template, without a cloud: what each section becomes. (Heat itself
making the template's resources is the openstack tier's test_heat.py.)"""
from __future__ import annotations

import pytest
import yaml

from nbcloud.core.errors import Unsupported
from nbcloud.core.stackfile import parse
from nbcloud.workflows.heat import template, text

pytestmark = pytest.mark.unit

BODY = """
network:
  lab: {cidr: 10.80.0.0/24, mode: nat}
  back: {cidr: 10.81.0.0/24, mode: isolated}
volume:
  data: {size: 1536M, tier: hdd}
secgroup:
  web: {rules: ["tcp 80 from lb", "tcp 8000-8010 from 10.0.0.0/8", "tcp 22 from web"]}
  lb: {rules: ["out tcp 80 to web"]}
instance:
  web: {image: tiny, flavor: t.nano, network: [lab, back], secgroup: [web], count: 2}
  db: {flavor: m.nano, network: [back], volume: [data], user_data: "#!/bin/sh\\necho hi"}
  bare: {flavor: m.nano}
loadbalancer:
  front: {network: lab, port: 80, members: ["web-*"]}
"""


def test_each_section_becomes_openstacks_resources():
    doc, left_out = template(parse(BODY, None, "shop"))
    res = doc["resources"]
    kinds = {name: r["type"] for name, r in res.items()}
    assert kinds["net-lab"] == "OS::Neutron::Net" and kinds["subnet-lab"] == "OS::Neutron::Subnet"
    assert res["subnet-back"]["properties"]["cidr"] == "10.81.0.0/24"
    # nat: a router to the external network; isolated: none
    assert res["router-lab"]["properties"]["external_gateway_info"] == \
        {"network": {"get_param": "external_network"}}
    assert "router-back" not in res
    # Cinder counts in GiB: 1536M is 2G
    assert res["volume-data"]["properties"] == {"name": "data", "size": 2, "volume_type": "hdd"}
    # count 2: web-1 and web-2, each with a port per network, a floating IP on lab
    for i in (1, 2):
        server = res[f"server-web-{i}"]["properties"]
        assert server["networks"] == [{"port": {"get_resource": f"port-web-{i}-lab"}},
                                      {"port": {"get_resource": f"port-web-{i}-back"}}]
        assert server["config_drive"] is True
        assert res[f"fip-web-{i}"]["properties"]["port_id"] == \
            {"get_resource": f"port-web-{i}-lab"}
        assert res[f"port-web-{i}-lab"]["properties"]["security_groups"] == [
            {"get_resource": "secgroup-nbcloud-ssh"}, {"get_resource": "secgroup-web"}]
    # db is on an isolated network only: no floating IP; its volume is attached
    assert "fip-db" not in res
    assert res["attach-db-data"]["properties"] == {
        "instance_uuid": {"get_resource": "server-db"},
        "volume_id": {"get_resource": "volume-data"}}
    assert res["server-db"]["properties"]["user_data"] == "#!/bin/sh\necho hi"
    # bare: the default network (an existing one, by name), unfiltered as on libvirt
    assert res["port-bare-nbcloud"]["properties"]["network"] == "nbcloud"
    assert res["port-bare-nbcloud"]["properties"]["security_groups"][1] == \
        {"get_resource": "secgroup-nbcloud-open"}
    assert "fip-bare" in res
    # rules: a CIDR as a prefix; the group itself as its remote group; another group (web
    # and lb name each other) as a rule resource of its own, so there is no circle
    assert res["secgroup-web"]["properties"]["rules"] == [
        {"direction": "ingress", "ethertype": "IPv4", "remote_ip_prefix": "10.0.0.0/8",
         "protocol": "tcp", "port_range_min": 8000, "port_range_max": 8010},
        {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
         "port_range_min": 22, "port_range_max": 22, "remote_mode": "remote_group_id"}]
    assert res["secgroup-web-rule-0"] == {"type": "OS::Neutron::SecurityGroupRule",
                                          "properties": {
        "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
        "port_range_min": 80, "port_range_max": 80,
        "security_group": {"get_resource": "secgroup-web"},
        "remote_group": {"get_resource": "secgroup-lb"}}}
    assert res["secgroup-lb-rule-0"]["properties"]["direction"] == "egress"
    assert res["secgroup-lb"]["properties"]["rules"] == []
    assert left_out == ["loadbalancer front: OpenStack's balancers are Octavia's; declare "
                        "one there"]


def test_the_text_is_yaml_that_names_what_was_left_out():
    out = text(parse(BODY, None, "shop"))
    assert out.startswith("# nbcloud stack shop as a Heat template")
    assert "# not exported: loadbalancer front" in out
    assert yaml.safe_load(out)["heat_template_version"] == "2018-08-31"


def test_a_routed_network_has_no_heat_equivalent():
    with pytest.raises(Unsupported, match="routed"):
        template(parse("network:\n  r: {cidr: 10.82.0.0/24, mode: routed}\n", None, "s"))
