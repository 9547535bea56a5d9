"""Networks, DHCP reservations and leases."""
from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from concurrent.futures import Future, ThreadPoolExecutor

import libvirt

from ...errors import CloudError, NotFound
from . import xml as lx


@dataclass
class Reservation:
    """An address reserved for one NIC (see `NetworkMixin.reserve_address`)."""
    network: str
    mac: str
    ip: str
    prefix: int
    gateway: str
    host_xml: str
    live: Future | None = None


class NetworkMixin:
    conn: libvirt.virConnect
    _net_lock: threading.Lock
    _background: ThreadPoolExecutor

    def ensure_network(self, name: str, cidr: str, mode: str, bridge: str) -> bool:
        changed = False
        try:
            net = self.conn.networkLookupByName(name)
        except libvirt.libvirtError:
            net = self.conn.networkDefineXML(lx.network_xml(name, cidr, mode, bridge))
            changed = True
        if not net.isActive():
            net.create()
            changed = True
        if not net.autostart():
            net.setAutostart(1)
            changed = True
        return changed

    def network_names(self) -> list[str]:
        return sorted(n.name() for n in self.conn.listAllNetworks(0))

    def network(self, name: str) -> lx.NetworkInfo:
        try:
            net = self.conn.networkLookupByName(name)
        except libvirt.libvirtError:
            raise NotFound(f"network {name!r} does not exist (see `%cloud network list`)") \
                from None
        return lx.parse_network(net.XMLDesc(0))

    def network_active(self, name: str) -> bool:
        try:
            return bool(self.conn.networkLookupByName(name).isActive())
        except libvirt.libvirtError:
            return False

    def reserve_address(self, network: str, mac: str, hostname: str) -> Reservation:
        """Reserve a free address in the lower half of `network` for `mac`.

        The reservation is a DHCP host entry, so the guest gets the same address by DHCP
        and the network's DNS knows `hostname`. It is written to the network's definition
        at once (which refuses a duplicate, so two notebooks cannot take one address);
        `publish` tells the running dnsmasq, which costs libvirt about 0.5 s of CPU.
        """
        with self._net_lock:
            for _ in range(5):
                net = self.conn.networkLookupByName(network)
                info = lx.parse_network(net.XMLDesc(0))
                config = lx.parse_network(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
                taken = {ip for _, ip, _ in info.hosts + config.hosts} | {info.gateway}
                taken |= {lease["ipaddr"] for lease in self.leases(network)}
                ip = self._free_address(info, taken)
                host = lx.dhcp_host_xml(mac, ip, hostname)
                try:
                    net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                               libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, host,
                               libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG)
                    break
                except libvirt.libvirtError:
                    continue  # another process took it between our read and our write
            else:
                raise CloudError(f"could not reserve an address on network {network!r}: "
                                 "it kept being taken; try again")
        return Reservation(network, mac, ip, info.network.prefixlen, info.gateway, host)

    def publish(self, reservation: Reservation) -> Future:
        """Tell the running dnsmasq about `reservation`, in the background."""
        reservation.live = self._background.submit(
            self._update_live, reservation.network,
            libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, reservation.host_xml)
        return reservation.live

    @staticmethod
    def _free_address(info: lx.NetworkInfo, taken: set[str]) -> str:
        hosts = list(info.network.hosts())
        dhcp_start = ipaddress.IPv4Address(info.dhcp_start or str(hosts[-1]))
        for addr in hosts:
            if addr >= dhcp_start:
                break
            if str(addr) not in taken:
                return str(addr)
        raise CloudError(f"network {info.name!r} has no free address left: delete an "
                         "instance or use a larger network")

    def _update_live(self, network: str, command: int, host_xml: str) -> None:
        net = self.conn.networkLookupByName(network)
        if net.isActive():
            net.update(command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, host_xml,
                       libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE)

    def release_address(self, network: str, mac: str) -> bool:
        """Remove `mac`'s reservation from the network's definition and its dnsmasq."""
        with self._net_lock:
            try:
                net = self.conn.networkLookupByName(network)
            except libvirt.libvirtError:
                return False
            found = False
            for flags, xml_flags in ((libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG,
                                      libvirt.VIR_NETWORK_XML_INACTIVE),
                                     (libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE, 0)):
                if xml_flags == 0 and not net.isActive():
                    continue
                for h_mac, ip, name in lx.parse_network(net.XMLDesc(xml_flags)).hosts:
                    if h_mac.lower() == mac.lower():
                        net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
                                   libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1,
                                   lx.dhcp_host_xml(h_mac, ip, name), flags)
                        found = True
            return found

    def leases(self, network: str) -> list[dict]:
        try:
            net = self.conn.networkLookupByName(network)
            return list(net.DHCPLeases()) if net.isActive() else []
        except libvirt.libvirtError:
            return []
