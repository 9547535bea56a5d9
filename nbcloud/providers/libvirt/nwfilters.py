"""Network filters (libvirt nwfilter): what security groups compile to.

A filter is a list of `FilterRule`s and references to other filters; libvirt turns it into
ebtables/iptables rules on each interface whose `<filterref>` names it, and re-instantiates
those rules on every interface at once when the filter is redefined. That last property is
what makes a security group's rules and memberships change live.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

import libvirt

from nbcloud.core.errors import CloudError, NotFound, NotManaged
from nbcloud.providers.libvirt.xml import _sub, _tostring, filterref_element


@dataclass(frozen=True)
class FilterRule:
    """One nwfilter `<rule>`: `protocol` is an nwfilter protocol element (tcp, udp, icmp,
    all), `match` its attributes (dstportstart, srcipaddr, state, ...)."""
    action: str            # accept | drop
    direction: str         # in (to the guest) | out (from the guest) | inout
    protocol: str
    match: dict[str, str] = field(default_factory=dict)
    priority: int = 500


@dataclass(frozen=True)
class FilterDef:
    name: str
    rules: tuple[FilterRule, ...] = ()
    refs: tuple[str, ...] = ()       # other filters included before the rules
    uuid: str | None = None


def nwfilter_xml(f: FilterDef) -> str:
    root = ET.Element("filter", name=f.name, chain="root")
    if f.uuid:
        _sub(root, "uuid", f.uuid)
    for ref in f.refs:
        _sub(root, "filterref", filter=ref)
    for r in f.rules:
        el = _sub(root, "rule", action=r.action, direction=r.direction,
                  priority=str(r.priority))
        _sub(el, r.protocol, **r.match)
    return _tostring(root)


def parse_nwfilter(text: str) -> FilterDef:
    root = ET.fromstring(text)
    rules = []
    for el in root.findall("rule"):
        proto = el[0] if len(el) else None
        rules.append(FilterRule(el.get("action", ""), el.get("direction", ""),
                                proto.tag if proto is not None else "",
                                dict(proto.attrib) if proto is not None else {},
                                int(el.get("priority", "500"))))
    return FilterDef(root.get("name", ""), tuple(rules),
                     tuple(r.get("filter", "") for r in root.findall("filterref")),
                     root.findtext("uuid"))


def with_filterref(iface: ET.Element, filter_name: str | None, ip: str = "") -> ET.Element:
    """A copy of interface element `iface` referencing `filter_name` with parameter IP
    `ip` (no filter name: unfiltered)."""
    iface = ET.fromstring(ET.tostring(iface))
    for old in iface.findall("filterref"):
        iface.remove(old)
    if filter_name:
        iface.append(filterref_element(filter_name, ip))
    return iface


def interface_filter(iface: ET.Element) -> tuple[str, str]:
    """(filter name, its IP parameter) of interface element `iface` ('' for none)."""
    ref = iface.find("filterref")
    if ref is None:
        return "", ""
    ip = next((p.get("value", "") for p in ref.findall("parameter")
               if p.get("name") == "IP"), "")
    return ref.get("filter", ""), ip


class NWFilterMixin:
    conn: libvirt.virConnect

    def define_nwfilter(self, f: FilterDef) -> None:
        """Define (or redefine, keeping its UUID) filter `f`; libvirt re-applies it to
        every interface that references it."""
        if f.uuid is None:
            try:
                f = FilterDef(f.name, f.rules, f.refs,
                              self.conn.nwfilterLookupByName(f.name).UUIDString())
            except libvirt.libvirtError:
                pass
        try:
            self.conn.nwfilterDefineXML(nwfilter_xml(f))
        except libvirt.libvirtError as exc:
            raise CloudError(f"libvirt refused network filter {f.name!r}: "
                             f"{exc.get_error_message()}") from None

    def undefine_nwfilter(self, name: str) -> bool:
        """Remove filter `name`; False if it did not exist."""
        try:
            flt = self.conn.nwfilterLookupByName(name)
        except libvirt.libvirtError:
            return False
        try:
            flt.undefine()
        except libvirt.libvirtError as exc:
            raise CloudError(f"libvirt kept network filter {name!r}: "
                             f"{exc.get_error_message()}") from None
        return True

    def nwfilter(self, name: str) -> FilterDef:
        try:
            return parse_nwfilter(self.conn.nwfilterLookupByName(name).XMLDesc(0))
        except libvirt.libvirtError:
            raise NotFound(f"network filter {name!r} does not exist") from None

    def nwfilter_names(self) -> list[str]:
        return sorted(f.name() for f in self.conn.listAllNWFilters(0))

    def interface_filters(self, name: str, inactive: bool = False) -> dict[str, str]:
        """MAC -> filter name ('' for none) of every interface of domain `name`."""
        dom = self._lookup(name)
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        root = ET.fromstring(dom.XMLDesc(flags))
        out = {}
        for iface in root.findall("devices/interface"):
            out[iface.find("mac").get("address", "")] = interface_filter(iface)[0]
        return out

    def check_interface_filters(self, name: str, filter_name: str | None,
                                allowed: Callable[[str], bool],
                                roots: list[ET.Element] | None = None) -> None:
        """NotManaged if an interface of domain `name` (live or defined) is filtered by
        something other than `filter_name` that is not `allowed`."""
        if roots is None:
            dom = self._lookup(name)
            roots = [ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))]
            if dom.isActive():
                roots.append(ET.fromstring(dom.XMLDesc(0)))
        for root in roots:
            for iface in root.findall("devices/interface[@type='network']"):
                current, _ip = interface_filter(iface)
                if current and current != filter_name and not allowed(current):
                    raise NotManaged(f"an interface of {name!r} is filtered by {current!r}, "
                                     "which nbcloud did not make for this inventory: it "
                                     "leaves that filter alone")

    def set_interface_filter(self, name: str, filter_name: str | None,
                             ips: dict[str, str] | None = None,
                             allowed: Callable[[str], bool] = lambda _f: True) -> None:
        """Point every interface of domain `name` on a libvirt network at `filter_name`
        (None: unfiltered) with parameter IP its address from `ips` (network -> address),
        in the running guest and in its definition (virDomainUpdateDeviceFlags). An
        interface whose current filter is not `allowed` is refused, nothing changed."""
        dom = self._lookup(name)
        passes = [(libvirt.VIR_DOMAIN_XML_INACTIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG)]
        if dom.isActive():
            passes.insert(0, (0, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        ips = ips or {}
        roots = [(ET.fromstring(dom.XMLDesc(x)), affect) for x, affect in passes]
        self.check_interface_filters(name, filter_name, allowed, [r for r, _ in roots])
        for root, affect in roots:
            for iface in root.findall("devices/interface[@type='network']"):
                source = iface.find("source")
                ip = ips.get(source.get("network", "") if source is not None else "", "")
                if interface_filter(iface) == (filter_name or "", ip if filter_name else ""):
                    continue
                try:
                    dom.updateDeviceFlags(
                        _tostring(with_filterref(iface, filter_name, ip)), affect)
                except libvirt.libvirtError as exc:
                    raise CloudError(f"libvirt did not change the filter of {name!r}: "
                                     f"{exc.get_error_message()}") from None
