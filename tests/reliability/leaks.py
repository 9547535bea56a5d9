"""What a Cloud left behind, read straight from libvirt and the inventory (not through
the code under test): domains, volumes in every pool, DHCP reservations and DNS records in
every network's definition and live state (and the files its dnsmasq reads), console
logs, inventory rows and operations still marked 'started', network filters of groups
and instances, port-forward rules in nbcloud's nft table, running HAProxy processes of
balancers."""
from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from nbcloud.providers.libvirt import xml as lx


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
        # reservations the running dnsmasq reads as files (providers/libvirt/dhcp_files.py)
        folder = Path(lx.network_hostsdir(descs[0]) or "/nonexistent")
        for entry in sorted(folder.glob("[0-9a-f]*")) if folder.is_dir() else []:
            fields = entry.read_text().strip().split(",")
            out.append((net.name(), "dhcp file", fields[2] if len(fields) > 2 else entry.name))
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
    out += [f"network filter {f.name()}" for f in conn.listAllNWFilters(0)
            if f"-sg-{prefix}" in f.name() or f"-inst-{prefix}" in f.name()]
    out += [f"nft rule {c}" for c in _nft_comments() if c.startswith(f"nbcloud:{prefix}")]
    out += [f"HAProxy process {pid} of {cfg}" for pid, cfg in _haproxies()
            if Path(cfg).name.startswith(prefix)]
    return out


def _nft_comments() -> list[str]:
    """The comments of the rules in nbcloud's nft table (none if there is no table)."""
    out = subprocess.run(["nft", "-j", "list", "table", "ip", "nbcloud"],
                         capture_output=True, text=True, check=False).stdout
    items = json.loads(out or "{}").get("nftables", [])
    return [i["rule"].get("comment", "") for i in items if "rule" in i]


def _haproxies() -> list[tuple[int, str]]:
    """(pid, config file) of every HAProxy process."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except (OSError, UnicodeDecodeError):
            continue
        if argv[0].endswith("haproxy") and "-f" in argv[:-1]:
            out.append((int(pid), argv[argv.index("-f") + 1]))
    return out
