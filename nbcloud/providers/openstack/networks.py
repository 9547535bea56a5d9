"""Networks on OpenStack: a Neutron network with one IPv4 subnet, tagged `nbcloud`.

`nat` adds a router (`nbcloud-NAME`) with the cloud's external network as its gateway, so
servers there can have floating IPs and reach out; `isolated` has none. Neutron serves
DHCP and DNS on the subnet itself; nbcloud reserves nothing (the ports carry the
addresses). `routed` and `open` need an admin's say on SNAT and are refused.
"""
from __future__ import annotations

import ipaddress

from nbcloud.core.errors import AlreadyExists, CloudError, NotFound, Unsupported
from nbcloud.core.spec import check_name
from nbcloud.core.undo import Undo
from nbcloud.providers.types import NetworkInfo

TAG = "nbcloud"
DEFAULT_CIDR = "10.77.0.0/24"


class NetworkMixin:
    """The network operations of `OpenStackProvider` (see providers/base.py, Networking)."""

    # ----- lookups -----------------------------------------------------------------------
    def _neutron_network(self, name: str):
        check_name(name, "network name")
        found = list(self.conn.network.networks(name=name, project_id=self.project_id)) or \
            [n for n in self.conn.network.networks(name=name) if n.is_shared]
        if not found:
            raise NotFound(f"network {name!r} does not exist (see `%cloud network list`)")
        return found[0]

    def _external_networks(self) -> list:
        return list(self.conn.network.networks(is_router_external=True))

    def _router_of(self, net):
        """The router with an interface on `net`, if any."""
        for port in self.conn.network.ports(network_id=net.id,
                                            device_owner="network:router_interface"):
            return self.conn.network.get_router(port.device_id)
        return None

    def _external_for(self, net):
        """The external network `net`'s router leads to (where floating IPs come from)."""
        router = self._router_of(net)
        gateway = (router.external_gateway_info or {}) if router is not None else {}
        if not gateway.get("network_id"):
            return None
        return self.conn.network.get_network(gateway["network_id"])

    def _info(self, net, names: dict[str, str] | None = None,
              dns: bool = False) -> NetworkInfo:
        """`net` as nbcloud sees it; `names` maps network IDs to names (for the uplink),
        `dns` adds the names Neutron's DNS answers on it (each port's dns_name)."""
        subnets = [s for s in self.conn.network.subnets(network_id=net.id)
                   if s.ip_version == 4]
        if not subnets and net.is_router_external:
            # a member does not see the external network's subnets: it is "the outside"
            return NetworkInfo(net.name, "", "external", ipaddress.IPv4Network("0.0.0.0/0"),
                               "", "", "", ())
        if not subnets:
            raise ValueError("no IPv4 subnet")
        sub = subnets[0]
        pool = (sub.allocation_pools or [{}])[0]
        router = self._router_of(net)
        uplink = ((router.external_gateway_info or {}).get("network_id", "")
                  if router is not None else "")
        mode = "external" if net.is_router_external else "nat" if router else "isolated"
        hosts = ()
        if dns:
            hosts = tuple((a["ip_address"], (a["hostname"],))
                          for p in self.conn.network.ports(network_id=net.id)
                          for a in (p.dns_assignment or [])
                          if p.dns_name and a.get("hostname") and ":" not in a["ip_address"])
        if uplink:
            uplink = (names or {}).get(uplink) or self.conn.network.get_network(uplink).name
        return NetworkInfo(net.name, "", mode, ipaddress.IPv4Network(sub.cidr),
                           sub.gateway_ip or "", pool.get("start", ""), pool.get("end", ""),
                           (), hosts, uplink)

    def network(self, name: str) -> NetworkInfo:
        try:
            return self._info(self._neutron_network(name), dns=True)
        except ValueError:
            raise NotFound(f"network {name!r} has no IPv4 subnet (nbcloud manages IPv4 "
                           "networks only)") from None

    def network_infos(self) -> list[NetworkInfo]:
        out = []
        nets = list(self.conn.network.networks())
        names = {n.id: n.name for n in nets}
        for net in nets:
            try:
                out.append(self._info(net, names))
            except ValueError:
                continue
        return sorted(out, key=lambda i: i.name)

    def network_names(self) -> list[str]:
        return sorted({n.name for n in self.conn.network.networks()})

    def network_active(self, name: str) -> bool:
        try:
            return self._neutron_network(name).status == "ACTIVE"
        except NotFound:
            return False

    def start_network(self, name: str) -> None:
        """A network Neutron reports down is set administratively up (Neutron runs it;
        nothing needs starting after a host restart here)."""
        net = self._neutron_network(name)
        if not net.is_admin_state_up:
            self.conn.network.update_network(net, is_admin_state_up=True)

    def network_managed(self, info: NetworkInfo) -> bool:
        try:
            return TAG in (self._neutron_network(info.name).tags or [])
        except NotFound:
            return False

    # ----- create and delete -------------------------------------------------------------
    def new_bridge(self, name: str) -> str:
        return ""   # Neutron names its own bridges

    def host_routes(self) -> list:
        """None: the cloud places networks away from its hosts' own ranges itself."""
        return []

    def create_network(self, name: str, cidr: str, mode: str, bridge: str = "") -> str:
        """Network, subnet and (for `nat`) a router to the external network; nothing is
        left if a step fails."""
        if mode not in ("nat", "isolated"):
            raise Unsupported(f"the openstack provider ({self.uri}) offers networks of mode "
                              f"nat or isolated, not {mode!r} (that needs an admin's "
                              "router settings)")
        if list(self.conn.network.networks(name=name, project_id=self.project_id)):
            raise AlreadyExists(f"network {name!r} exists already: pick another name or "
                                "delete it first")
        external = self._external_networks() if mode == "nat" else []
        if mode == "nat" and not external:
            raise CloudError(f"the cloud {self.cloud!r} has no external network: a nat "
                             "network needs one for its router (use --mode isolated)")
        try:
            with Undo() as undo:   # nothing is left if a step fails
                net = self.conn.network.create_network(name=name)
                undo.add(lambda: self.conn.network.delete_network(net, ignore_missing=True))
                self.conn.network.set_tags(net, [TAG])
                sub = self.conn.network.create_subnet(
                    network_id=net.id, name=name, ip_version=4, cidr=cidr, enable_dhcp=True)
                if mode == "nat":
                    router = self.conn.network.create_router(
                        name=f"nbcloud-{name}",
                        external_gateway_info={"network_id": external[0].id})
                    undo.add(lambda: self.conn.network.delete_router(router,
                                                                     ignore_missing=True))
                    self.conn.network.set_tags(router, [TAG])
                    # the subnet positionally: its keyword was renamed in openstacksdk 4
                    self.conn.network.add_interface_to_router(router, sub.id)
        except CloudError:
            raise
        except Exception as exc:  # noqa: BLE001  (the API's reason, in one line)
            raise CloudError(f"Neutron refused network {name!r}: "
                             f"{' '.join(str(exc).split())[:300]}") from None
        return ""

    def delete_network(self, name: str) -> None:
        net = self._neutron_network(name)
        router = self._router_of(net)
        if router is not None and TAG in (router.tags or []):
            for sub in self.conn.network.subnets(network_id=net.id):
                self.conn.network.remove_interface_from_router(router, sub.id)
            self.conn.network.delete_router(router, ignore_missing=True)
        self.conn.network.delete_network(net, ignore_missing=True)

    def ensure_network(self, name: str, cidr: str, mode: str, bridge: str = "") -> bool:
        if list(self.conn.network.networks(name=name, project_id=self.project_id)):
            return False
        self.create_network(name, cidr, mode)
        return True

    def ensure_default_network(self, cidr: str = DEFAULT_CIDR) -> bool:
        """The `nbcloud` network of this project (nat when the cloud has an external
        network, else isolated); True if it was made now."""
        mode = "nat" if self._external_networks() else "isolated"
        return self.ensure_network(self.default_network, cidr, mode)

    # ----- addresses -------------------------------------------------------------------
    def leases(self, network: str) -> list[dict]:
        """The ports of `network` as leases: mac, ipaddr, hostname (the port's device)."""
        net = self._neutron_network(network)
        servers = {s.id: s.name for s in self.conn.compute.servers(details=False)}
        out = []
        for p in self.conn.network.ports(network_id=net.id):
            for ip in p.fixed_ips or []:
                out.append({"mac": p.mac_address, "ipaddr": ip["ip_address"],
                            "hostname": servers.get(p.device_id, p.device_owner or ""),
                            "expirytime": 0, "type": 0})
        return out

    def set_dns_names(self, network: str, ip: str, names: tuple[str, ...]) -> None:
        raise Unsupported(f"the openstack provider ({self.uri}) adds no DNS records: "
                          "Neutron's DNS answers each instance's own name (its port's "
                          "dns_name), and only that")

    def host_reservations(self, network: str, hostname: str) -> list:
        return []   # Neutron's ports are the reservations; they go with their server

    def release_address(self, network: str, mac: str) -> bool:
        return False

    def publish(self, reservation):
        raise Unsupported("an OpenStack cloud publishes its own addresses")
