"""The domain XML of a warm base and of its clones, the QMP commands that restore a clone,
and the handshake that tells a restored clone who it is (see clones.py)."""
from __future__ import annotations

import copy
import json
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import libvirt_qemu

from nbcloud.providers.libvirt import tapguard
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.nwfilters import interface_filter
from nbcloud.providers.types import Image

RAM_ID = "nbcram"
READY = b"nbcloud-ready"
READY_TIMEOUT = 120.0              # identity sent -> the clone's ready line


def qmp(dom: libvirt.virDomain, command: str, **arguments) -> dict:
    """One QMP command to the domain's QEMU, through libvirt."""
    msg = {"execute": command, **({"arguments": arguments} if arguments else {})}
    return json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps(msg), 0))


def _qemu_args(root: ET.Element) -> ET.Element:
    cmd = root.find(f"{{{lx.QEMU_NS}}}commandline")
    if cmd is None:
        cmd = ET.SubElement(root, f"{{{lx.QEMU_NS}}}commandline")
    return cmd


def base_domain_xml(image: Image, flavor, domain_type: str, *, name: str, mac: str,
                    network: str, disk: str, log: str, sock: str, ram: str) -> str:
    """The base: the instance's own domain (xml.domain_xml) without its seed, booted with
    nbwarm=1, plus the virtio console its clones hear their identity on, and its RAM in
    file `ram`, mapped shared."""
    d = lx.DomainDef(name=name, vcpus=flavor.vcpus, memory=flavor.memory,
                     domain_type=domain_type,
                     boot=lx.KernelBoot(image.kernel, image.initrd, f"{image.cmdline} nbwarm=1"),
                     disks=(lx.Disk(disk, "vda"),), nics=(lx.Nic(network, mac),),
                     console_log=log, smbios_serial="ds=nocloud")
    root = ET.fromstring(lx.domain_xml(d))
    console = ET.SubElement(root.find("devices"), "console", type="unix")
    ET.SubElement(console, "source", mode="bind", path=sock)
    ET.SubElement(console, "target", type="virtio", port="1")
    cmd = _qemu_args(root)
    for arg in ("-object", f"memory-backend-file,id={RAM_ID},size={flavor.memory},"
                           f"mem-path={ram},share=on",
                "-machine", f"memory-backend={RAM_ID}"):
        ET.SubElement(cmd, f"{{{lx.QEMU_NS}}}arg", value=arg)
    return ET.tostring(root, encoding="unicode")


def guardable(defined: str) -> tuple[str, str, str] | None:
    """(tap name, MAC, address) where defined instance `defined`'s one NIC is filtered by
    plain anti-spoofing with a known address: nbcloud can guard its tap itself
    (tapguard.py) for the clone's first run. None otherwise (a security group's filter,
    no address): libvirt's filter."""
    root = ET.fromstring(defined)
    nics = root.findall("devices/interface")
    if len(nics) != 1:
        return None
    filter_name, ip = interface_filter(nics[0])
    if filter_name != lx.BASE_FILTER:
        return None
    mac = nics[0].find("mac").get("address", "")
    uuid = root.findtext("uuid") or ""
    if not (ip and mac and uuid):
        return None
    return tapguard.tap_name(uuid), mac, ip


def clone_domain_xml(saved: str, defined: str, sock: str, tap: str = "") -> str:
    """The base's saved XML made the clone's: the defined instance's name, UUID, metadata,
    MAC, network filters, root disk, console log and kernel command line (a reboot of the
    clone is a cold boot), its own console socket, the RAM file mapped private, and QEMU
    told to wait for the base's state. With `tap`: the NIC is that tap, with no libvirt
    filter (nbcloud guards it: tapguard.py)."""
    root, own = ET.fromstring(saved), ET.fromstring(defined)
    root.find("name").text = own.findtext("name")
    if root.find("uuid") is None:
        root.insert(list(root).index(root.find("name")) + 1, ET.Element("uuid"))
    root.find("uuid").text = own.findtext("uuid")
    for old in root.findall("metadata"):
        root.remove(old)
    meta = own.find("metadata")
    if meta is not None:
        root.insert(list(root).index(root.find("uuid")) + 1, copy.deepcopy(meta))
    (nic,), (own_nic,) = root.findall("devices/interface"), own.findall("devices/interface")
    nic.find("mac").set("address", own_nic.find("mac").get("address"))
    nic.find("source").attrib = {"network": own_nic.find("source").get("network")}
    for runtime in nic.findall("target"):
        nic.remove(runtime)
    # its own filters (anti-spoofing with its own address, its groups'): the base has none
    for ref in nic.findall("filterref"):
        nic.remove(ref)
    if tap:
        ET.SubElement(nic, "target", dev=tap)
    else:
        for ref in own_nic.findall("filterref"):
            nic.append(copy.deepcopy(ref))
    own_root = next(d for d in own.findall("devices/disk")
                    if d.find("target").get("dev") == "vda")
    for disk in root.findall("devices/disk"):
        if disk.find("target").get("dev") == "vda":
            disk.find("source").set("file", own_root.find("source").get("file"))
    own_log = own.find("devices/serial/log")
    for log in root.iter("log"):
        log.set("file", own_log.get("file"))
    for console in root.findall("devices/console"):
        if console.get("type") == "unix":
            console.find("source").set("path", sock)
    root.find("os/cmdline").text = own.findtext("os/cmdline")
    cmd = _qemu_args(root)
    for arg in cmd:
        value = arg.get("value", "")
        if value.startswith("memory-backend-file,"):
            arg.set("value", value.replace(",share=on", ",share=off"))
    for arg in ("-incoming", "defer"):
        ET.SubElement(cmd, f"{{{lx.QEMU_NS}}}arg", value=arg)
    return ET.tostring(root, encoding="unicode")


def handshake(sock: Path, message: bytes, timeout: float = READY_TIMEOUT) -> str:
    """Send the identity on the clone's console and return its ready line."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        s.sendall(message)
        buf = b""
        while time.monotonic() < deadline:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
            for line in buf.split(b"\n")[:-1]:
                if line.strip().startswith(READY):
                    return line.strip().decode(errors="replace")
    raise TimeoutError(f"the clone did not say it was ready within {timeout:.0f} s")


def snapshot_without_clone_start(snapshot_xml: str, defined: str) -> str | None:
    """A snapshot of a running clone, as libvirt can revert to it: libvirt reverts by
    starting a new QEMU with `-loadvm` from the snapshot's domain, which for a clone says
    `-incoming defer` (refused with -loadvm) and maps the base's RAM file (gone after the
    base is rebuilt). The same RAM block (id nbcram) as plain anonymous memory, with no
    -incoming, loads the snapshot's memory as well. A NIC nbcloud guarded itself
    (tapguard.py) gets back the filters of its definition `defined` (a revert is a
    start that libvirt filters) and a tap name of libvirt's. None if it is no clone's."""
    root = ET.fromstring(snapshot_xml)
    dom = root.find("domain")
    cmd = dom.find(f"{{{lx.QEMU_NS}}}commandline") if dom is not None else None
    if cmd is None:
        return None
    args = list(cmd)
    values = [a.get("value", "") for a in args]
    if "-incoming" not in values:
        return None
    at = values.index("-incoming")
    for arg in args[at:at + 2]:
        cmd.remove(arg)
    for arg in cmd:
        value = arg.get("value", "")
        if value.startswith("memory-backend-file,"):
            opts = dict(kv.split("=", 1) for kv in value.split(",")[1:])
            arg.set("value", f"memory-backend-ram,id={opts['id']},size={opts['size']}")
    own = {n.find("mac").get("address", "").lower(): n
           for n in ET.fromstring(defined).findall("devices/interface")
           if n.find("mac") is not None}
    for nic in dom.findall("devices/interface"):
        target = nic.find("target")
        if target is None or not tapguard.is_guarded_tap(target.get("dev", "")):
            continue
        nic.remove(target)
        mac = nic.find("mac").get("address", "").lower() if nic.find("mac") is not None else ""
        if nic.find("filterref") is None and mac in own:
            for ref in own[mac].findall("filterref"):
                nic.append(copy.deepcopy(ref))
    return ET.tostring(root, encoding="unicode")
