"""What a Cloud left behind, read straight from libvirt and the inventory (not through
the code under test): domains, volumes in every pool, DHCP reservations and DNS records in
every network's definition and live state, console logs, inventory rows and operations
still marked 'started'."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt


def _network_entries(conn) -> list[tuple[str, str, str]]:
    """(network, 'dhcp host'|'dns record', hostname) for every entry, config and live."""
    out = []
    for net in conn.listAllNetworks(0):
        descs = [net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)]
        if net.isActive():
            descs.append(net.XMLDesc(0))
        for desc in descs:
            root = ET.fromstring(desc)
            for host in root.iterfind("ip/dhcp/host"):
                out.append((net.name(), "dhcp host", host.get("name") or host.get("mac", "")))
            for host in root.iterfind("dns/host"):
                for hostname in host.iterfind("hostname"):
                    out.append((net.name(), "dns record", hostname.text or ""))
    return out


def leftovers(cloud, prefix: str) -> list[str]:
    """Everything whose name starts with `prefix`, one line each (empty: nothing left)."""
    conn, out = cloud.provider.conn, []
    out += [f"domain {d.name()}" for d in conn.listAllDomains(0)
            if d.name().startswith(prefix)]
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        try:
            pool.refresh(0)
            vols = [v.name() for v in pool.listAllVolumes(0)]
        except libvirt.libvirtError:
            continue
        out += [f"volume {pool.name()}/{v}" for v in vols if v.startswith(prefix)]
    out += [f"storage pool {p.name()}" for p in conn.listAllStoragePools(0)
            if p.name().startswith(prefix)]
    out += [f"network {n.name()}" for n in conn.listAllNetworks(0)
            if n.name().startswith(prefix)]
    out += sorted({f"{kind} {host} on {net}" for net, kind, host in _network_entries(conn)
                   if host.startswith(prefix)})
    logs = cloud.paths["logs"]
    if logs.is_dir():
        out += [f"console log {p.name}" for p in logs.glob(f"nbcloud-{prefix}*.console.log")]
    out += [f"inventory row {r.kind} {r.name}" for r in cloud.inventory.resources(cloud.uri)
            if r.name.startswith(prefix)]
    out += [f"operation {o['id']} {o['verb']} {o['name']} still 'started'"
            for o in cloud.inventory.unfinished() if o["name"].startswith(prefix)]
    return out
