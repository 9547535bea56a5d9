"""Which hosts a network spans, and joining them (LibvirtCloud's part; overlay.py has the
VXLAN devices themselves).

A network's *authority* is the host whose libvirt network of that name has an address:
its gateway, dnsmasq (DHCP and DNS for every instance of the network, wherever it runs)
and, for `nat`, its way out. Another host gets a *member* network of the same name when
an instance of the network is made there or moves there: the same bridge name, no
address, no dnsmasq; then every host of the network is joined by VXLAN.
"""
from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

import libvirt

from nbcloud.core.errors import CloudError, Unsupported
from nbcloud.providers.libvirt import overlay
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.networks import is_managed

_SPAN_LOCK = threading.Lock()   # one mesh change at a time in this process


def member_network_xml(name: str, bridge: str) -> str:
    """A network with a bridge and nothing else: no address, so no DHCP or DNS server
    and no route; the authority's, over VXLAN, serves its instances."""
    root = ET.Element("network")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "bridge", name=bridge, stp="off", delay="0")
    return ET.tostring(root, encoding="unicode")


def _network_root(conn, name: str) -> ET.Element | None:
    try:
        return ET.fromstring(conn.networkLookupByName(name).XMLDesc(0))
    except libvirt.libvirtError:
        return None


class SpanMixin:
    """Authorities, member networks and meshes of a `LibvirtCloud`."""

    def authority(self, network: str) -> str:
        """The host that serves network `network`'s DHCP and DNS (the home host when
        no host has it: its NotFound says so)."""
        if not self.peers:
            return self.home_host
        for host in self._up_hosts():
            try:
                root = _network_root(self._host(host).conn, network)
            except libvirt.libvirtError:
                continue
            if root is not None and root.find("ip") is not None:
                return host
        return self.home_host

    def _is_member(self, host: str, network: str) -> bool:
        try:
            root = _network_root(self._host(host).conn, network)
        except libvirt.libvirtError:
            return False
        return root is not None and root.find("ip") is None

    def span(self, network: str, host: str) -> list[str]:
        """Make network `network` reach `host`: a member network there, and the VXLAN
        mesh of every host the network has. Returns what changed."""
        auth = self.authority(network)
        info = self._call(auth, "network", network)
        if host != auth and not self.is_test_driver:   # refused before anything is made
            for h in (auth, host):
                self.shell(h).require()
        with _SPAN_LOCK:
            done = []
            if host != auth:
                done += self._ensure_member(host, network, info.bridge)
            members = [h for h in self._up_hosts() if h == auth or self._is_member(h, network)]
            if len(members) > 1 and not self.is_test_driver:   # the test driver: no kernel
                done += overlay.join(network, [
                    overlay.Member(self.shell(h), self.address(h), info.bridge)
                    for h in members])
            return done

    def _ensure_member(self, host: str, network: str, bridge: str) -> list[str]:
        conn = self._host(host).conn
        root = _network_root(conn, network)
        if root is not None and root.find("ip") is not None:
            info = lx.parse_network(ET.tostring(root, encoding="unicode"))
            users = [n for n, meta in self._call(host, "managed").items()
                     if network in meta.get("networks", "").split(",")]
            if not is_managed(info) or users:
                raise CloudError(
                    f"host {host} has a network {network!r} of its own ({info.network}, "
                    f"with its own DHCP{', used by ' + ', '.join(users) if users else ''}): "
                    f"a network spanning hosts has one DHCP server, on host "
                    f"{self.authority(network)}; delete or rename it on {host}")
            net = conn.networkLookupByName(network)   # nbcloud's, unused: it becomes a member
            if net.isActive():
                net.destroy()
            net.undefine()
            root = None
        done = []
        if root is None:
            try:
                net = conn.networkDefineXML(member_network_xml(network, bridge))
            except libvirt.libvirtError as exc:
                raise CloudError(f"host {host} refused network {network!r}: "
                                 f"{exc.get_error_message()}") from None
            net.setAutostart(1)
            done.append(f"network {network} on {host}")
        net = conn.networkLookupByName(network)
        if not net.isActive():
            net.create()
        return done

    def leave_all(self, host: str) -> list[str]:
        """Take `host` out of every network it is a member of (its member networks and
        VXLAN devices go); the networks' other hosts are joined again by the caller."""
        done = []
        conn = self._host(host).conn
        for net in conn.listAllNetworks(0):
            if ET.fromstring(net.XMLDesc(0)).find("ip") is not None:
                continue
            name = net.name()
            if net.isActive():
                net.destroy()
            net.undefine()
            overlay.leave(name, self.shell(host))
            done.append(f"network {name} left {host}")
        return done

    def rejoin_all(self) -> list[str]:
        """Join every spanning network's hosts again (after a host went)."""
        done = []
        for info in self.network_infos():
            auth = self.authority(info.name)
            members = [h for h in self._up_hosts()
                       if h == auth or self._is_member(h, info.name)]
            if len(members) > 1:
                done += overlay.join(info.name, [
                    overlay.Member(self.shell(h), self.address(h), info.bridge)
                    for h in members])
            else:
                try:    # alone again: its VXLAN device floods to nobody, and goes
                    if overlay.flood_list(self.shell(auth), overlay.device(info.name)) \
                            is not None:
                        overlay.leave(info.name, self.shell(auth))
                except Unsupported:   # a host without a shell never had one
                    pass
        return done

    def delete_network(self, name: str) -> None:
        if not self.peers:
            return self._call(self.home_host, "delete_network", name)
        auth = self.authority(name)
        spanned = False
        for host in self._up_hosts():
            if host != auth and self._is_member(host, name):
                net = self._host(host).conn.networkLookupByName(name)
                if net.isActive():
                    net.destroy()
                net.undefine()
                overlay.leave(name, self.shell(host))
                spanned = True
        self._call(auth, "delete_network", name)
        if spanned:
            overlay.leave(name, self.shell(auth))
