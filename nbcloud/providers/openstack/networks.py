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

    def _info(self, net) -> NetworkInfo:
        subnets = [s for s in self.conn.network.subnets(network_id=net.id)
                   if s.ip_version == 4]
        if not subnets:
            raise ValueError("no IPv4 subnet")
        sub = subnets[0]
        pool = (sub.allocation_pools or [{}])[0]
        mode = "nat" if self._router_of(net) is not None else "isolated"
        if net.is_router_external:
            mode = "external"
        return NetworkInfo(net.name, "", mode, ipaddress.IPv4Network(sub.cidr),
                           sub.gateway_ip or "", pool.get("start", ""), pool.get("end", ""),
                           ())

    def network(self, name: str) -> NetworkInfo:
        try:
            return self._info(self._neutron_network(name))
        except ValueError:
            raise NotFound(f"network {name!r} has no IPv4 subnet (nbcloud manages IPv4 "
                           "networks only)") from None

    def network_infos(self) -> list[NetworkInfo]:
        out = []
        for net in self.conn.network.networks():
            try:
                out.append(self._info(net))
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
        made = []
        try:
            net = self.conn.network.create_network(name=name)
            made.append(lambda: self.conn.network.delete_network(net, ignore_missing=True))
            self.conn.network.set_tags(net, [TAG])
            sub = self.conn.network.create_subnet(
                network_id=net.id, name=name, ip_version=4, cidr=cidr, enable_dhcp=True)
            if mode == "nat":
                router = self.conn.network.create_router(
                    name=f"nbcloud-{name}",
                    external_gateway_info={"network_id": external[0].id})
                made.append(lambda: self.conn.network.delete_router(router,
                                                                    ignore_missing=True))
                self.conn.network.set_tags(router, [TAG])
                self.conn.network.add_interface_to_router(router, subnet_id=sub.id)
        except Exception as exc:  # noqa: BLE001
            for undo in reversed(made):
                try:
                    undo()
                except Exception:  # noqa: BLE001  (best effort: the first error is told)
                    pass
            if isinstance(exc, CloudError):
                raise
            raise CloudError(f"Neutron refused network {name!r}: "
                             f"{' '.join(str(exc).split())[:300]}") from None
        return ""

    def delete_network(self, name: str) -> None:
        net = self._neutron_network(name)
        router = self._router_of(net)
        if router is not None and TAG in (router.tags or []):
            for sub in self.conn.network.subnets(network_id=net.id):
                self.conn.network.remove_interface_from_router(router, subnet_id=sub.id)
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
        raise Unsupported(f"the openstack provider ({self.uri}) keeps no DNS records of "
                          "nbcloud's: Neutron names each port by its server")

    def host_reservations(self, network: str, hostname: str) -> list:
        return []   # Neutron's ports are the reservations; they go with their server

    def release_address(self, network: str, mac: str) -> bool:
        return False

    def publish(self, reservation):
        raise Unsupported("an OpenStack cloud publishes its own addresses")
