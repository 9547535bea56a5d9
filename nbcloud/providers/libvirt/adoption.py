"""What adoption and drift need of any domain, nbcloud's or not: its facts (vCPUs, memory,
NICs) read from its XML, the metadata mark an adopted domain is given, and NICs plugged
or unplugged to put back what nbcloud made."""
from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import libvirt

from nbcloud.core.errors import AlreadyExists, CloudError
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.nwfilters import interface_filter

MEMORY_UNITS = {"b": 1, "bytes": 1, "KiB": 1 << 10, "k": 1 << 10, "MiB": 1 << 20,
                "M": 1 << 20, "GiB": 1 << 30, "G": 1 << 30}


def parse_nics(root: ET.Element) -> list[tuple[str, str]]:
    """(network, mac) of each `<interface>`, in order. One not on a libvirt network reads
    as 'TYPE:SOURCE' (e.g. 'bridge:br0'), which no nbcloud network is called."""
    out = []
    for iface in root.findall("devices/interface"):
        kind, source = iface.get("type", ""), iface.find("source")
        mac = iface.find("mac")
        if kind == "network" and source is not None:
            net = source.get("network", "")
        else:
            net = f"{kind}:{source.get('bridge', '') if source is not None else ''}"
        out.append((net, (mac.get("address", "") if mac is not None else "").lower()))
    return out


def parse_facts(root: ET.Element) -> dict:
    """vcpus, memory (bytes), running, uuid and nics of a domain's XML."""
    memory = root.find("memory")
    unit = MEMORY_UNITS.get(memory.get("unit", "KiB"), 1024) if memory is not None else 0
    return {"vcpus": int(root.findtext("vcpu", "0")),
            "memory": int(memory.text) * unit if memory is not None else 0,
            "running": root.get("id") is not None, "uuid": root.findtext("uuid"),
            "nics": parse_nics(root)}


class AdoptionMixin:
    conn: libvirt.virConnect

    def _any_domain(self, name: str) -> libvirt.virDomain:
        from nbcloud.core.errors import NotFound
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError:
            raise NotFound(f"instance {name!r} does not exist (see `virsh list --all`)") \
                from None

    def domain_facts(self, name: str) -> dict:
        """`parse_facts` of domain `name` (marked or not), and whether nbcloud's mark is
        on it."""
        root = ET.fromstring(self._any_domain(name).XMLDesc(0))
        facts = parse_facts(root)
        facts["marked"] = root.find(f"metadata/{{{lx.NS}}}instance") is not None
        return facts

    def mark_domain(self, name: str, values: dict[str, str]) -> None:
        """Put nbcloud's metadata mark on domain `name`, which has none (adoption)."""
        dom = self._any_domain(name)
        if self.domain_facts(name)["marked"]:
            raise AlreadyExists(f"instance {name!r} carries nbcloud's mark already: it is "
                                "nbcloud's, nothing to adopt")
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if dom.isActive():
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        try:
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                            lx.metadata_update_xml(values), "nbcloud", lx.NS, flags)
        except libvirt.libvirtError as exc:
            raise CloudError(f"libvirt did not take nbcloud's mark on {name!r}: "
                             f"{exc.get_error_message()}") from None

    def _affect(self, dom: libvirt.virDomain) -> int:
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        return flags | libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else flags

    def attach_nic(self, name: str, network: str, mac: str) -> None:
        """Plug a virtio NIC with `mac` on `network` into domain `name` (and its
        definition), filtered as its other NICs are (anti-spoofing at least, where
        nbcloud knows its address there)."""
        dom = self._any_domain(name)
        el = ET.Element("interface", type="network")
        ET.SubElement(el, "mac", address=mac)
        ET.SubElement(el, "source", network=network)
        ET.SubElement(el, "model", type="virtio")
        ip = self.nic_addresses(name).get(network, "")
        others = [interface_filter(i)[0] for i in ET.fromstring(dom.XMLDesc(0))
                  .findall("devices/interface[@type='network']")]
        flt = next((f for f in others if f), lx.BASE_FILTER if ip else "")
        if flt:
            el.append(lx.filterref_element(flt, ip))
        try:
            dom.attachDeviceFlags(ET.tostring(el, encoding="unicode"), self._affect(dom))
        except libvirt.libvirtError as exc:
            raise CloudError(f"libvirt did not plug a NIC on {network!r} into {name!r}: "
                             f"{exc.get_error_message()}") from None

    def detach_nic(self, name: str, mac: str, timeout: float = 30.0) -> None:
        """Unplug the NIC with `mac` from domain `name` and its definition; the guest
        answers the unplug (ACPI), so wait up to `timeout` s for it to be gone."""
        dom = self._any_domain(name)
        for live in (True, False):   # the guest first: if it refuses, nothing changed
            if live and not dom.isActive():
                continue
            root = ET.fromstring(dom.XMLDesc(0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE))
            for iface in root.findall("devices/interface"):
                m = iface.find("mac")
                if m is None or m.get("address", "").lower() != mac.lower():
                    continue
                affect = libvirt.VIR_DOMAIN_AFFECT_LIVE if live else \
                    libvirt.VIR_DOMAIN_AFFECT_CONFIG
                try:
                    dom.detachDeviceFlags(ET.tostring(iface, encoding="unicode"), affect)
                except libvirt.libvirtError as exc:
                    raise CloudError(f"libvirt did not unplug NIC {mac} from {name!r}: "
                                     f"{exc.get_error_message()}") from None
        deadline = time.monotonic() + timeout
        while dom.isActive() and any(m == mac.lower() for _n, m in
                                     parse_nics(ET.fromstring(dom.XMLDesc(0)))):
            if time.monotonic() > deadline:
                raise CloudError(f"instance {name!r} did not release NIC {mac} within "
                                 f"{timeout:.0f} s (it is out of the definition and goes "
                                 "when the guest lets go)")
            time.sleep(0.2)
