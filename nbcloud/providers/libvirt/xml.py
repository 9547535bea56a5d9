"""libvirt XML, built element by element with ElementTree (never by string formatting).

Names reaching these builders have passed spec.check_name; values are set as text or
attributes, so ElementTree escapes them.
"""
from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from nbcloud.providers.types import USER_NETWORK, NetworkInfo

NS = "http://nbcloud.org/xmlns/instance/1"
ET.register_namespace("nbcloud", NS)

#: Metadata keys stored on every domain nbcloud makes (all strings).
META_KEYS = ("kind", "stack", "image", "flavor", "networks", "ip", "ips", "mac", "hostkey",
             "key", "created", "volumes", "ssh_port", "adopted", "ssh_user", "boot")
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)
DNSMASQ_NS = "http://libvirt.org/schemas/network/dnsmasq/1.0"
ET.register_namespace("dnsmasq", DNSMASQ_NS)


@dataclass(frozen=True)
class KernelBoot:
    kernel: str
    initrd: str
    cmdline: str


@dataclass(frozen=True)
class Disk:
    path: str
    target: str                   # vda, vdb, ...
    fmt: str = "qcow2"
    readonly: bool = False
    serial: str | None = None


# The anti-spoofing filter (firewall.antispoof_filter), given the NIC's address as its IP
# parameter: every NIC nbcloud plugs into a libvirt network carries it, or an instance
# filter that references it, so that no guest can send as another.
BASE_FILTER = "nbcloud-antispoof"


@dataclass(frozen=True)
class Nic:
    network: str
    mac: str
    host_port: int | None = None  # user network: the loopback port forwarded to guest :22
    ip: str = ""                  # its reserved address: the anti-spoofing filter's IP


def filterref_element(filter_name: str, ip: str = "") -> ET.Element:
    """`<filterref filter=NAME>` with the NIC's address as parameter IP (none: libvirt
    learns it from the guest's DHCP)."""
    ref = ET.Element("filterref", filter=filter_name)
    if ip:
        _sub(ref, "parameter", name="IP", value=ip)
    return ref


@dataclass(frozen=True)
class SharedDir:
    """A host folder shared into the guest with virtiofs, mounted there by its `tag`."""
    source: str
    tag: str


@dataclass(frozen=True)
class DomainDef:
    """Everything a domain XML needs; see `domain_xml`."""
    name: str
    vcpus: int
    memory: int                   # bytes
    domain_type: str = "qemu"     # 'kvm' or 'qemu' (TCG)
    machine: str = "pc"
    boot: KernelBoot | None = None
    disks: tuple[Disk, ...] = ()
    nics: tuple[Nic, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    console_log: str | None = None
    uuid: str | None = None
    video: bool = False           # a VGA adapter, for screenshots (headless: no graphics)
    shares: tuple[SharedDir, ...] = ()  # virtiofs folders (and memory shared with virtiofsd)
    # SMBIOS system serial: "ds=nocloud" tells cloud-init's ds-identify where its data is,
    # so it skips probing every other datasource (~2-3 s of a debian boot under TCG)
    smbios_serial: str | None = None


# Characters XML 1.0 cannot carry at all (ElementTree would write them unescaped and
# produce a document libvirt rejects), and the carriage return, which ElementTree leaves
# unescaped in text so that every parser reads it back as a newline: refused before any
# XML is built.
_NOT_XML = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff\ud800-\udfff]")


def _text(value: str) -> str:
    if _NOT_XML.search(value):
        raise ValueError(f"{value!r} contains control characters nbcloud does not put "
                         "in libvirt XML")
    return value


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.rstrip("_"): _text(v) for k, v in attrs.items()})
    if text is not None:
        el.text = _text(text)
    return el


def _tostring(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode")


def metadata_element(values: dict[str, str]) -> ET.Element:
    root = ET.Element(f"{{{NS}}}instance")
    for key in META_KEYS:
        if key in values:
            ET.SubElement(root, f"{{{NS}}}{key}").text = _text(values[key])
    return root


def metadata_xml(values: dict[str, str]) -> str:
    return _tostring(metadata_element(values))


def metadata_update_xml(values: dict[str, str]) -> str:
    """The metadata element as `virDomainSetMetadata` takes it: without a namespace,
    which libvirt adds itself (it refuses a document that declares one already)."""
    root = ET.Element("instance")
    for key in META_KEYS:
        if key in values:
            ET.SubElement(root, key).text = _text(values[key])
    return _tostring(root)


def parse_metadata(text: str) -> dict[str, str]:
    """The nbcloud metadata element (as libvirt returns it) -> dict."""
    root = ET.fromstring(text)
    return {child.tag.split("}")[-1]: child.text or "" for child in root}


def domain_xml(d: DomainDef) -> str:
    """A small, fast domain: no USB, no video, no balloon; virtio disks and network.

    Each left-out device was measured: libvirt's default USB, balloon and VGA cost 0.45 s
    of a TCG boot, and a virtio-rng made it slower, not faster."""
    root = ET.Element("domain", type=d.domain_type)
    _sub(root, "name", d.name)
    if d.uuid:
        _sub(root, "uuid", d.uuid)
    if d.metadata:
        _sub(root, "metadata").append(metadata_element(d.metadata))
    _sub(root, "memory", str(d.memory // 1024), unit="KiB")
    if d.shares:  # virtiofsd maps the guest's memory: it must be shared, file-backed
        backing = _sub(root, "memoryBacking")
        _sub(backing, "source", type="memfd")
        _sub(backing, "access", mode="shared")
    _sub(root, "vcpu", str(d.vcpus), placement="static")
    if d.smbios_serial:
        system = _sub(_sub(root, "sysinfo", type="smbios"), "system")
        _sub(system, "entry", d.smbios_serial, name="serial")
    os_ = _sub(root, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine=d.machine)
    if d.smbios_serial:
        _sub(os_, "smbios", mode="sysinfo")
    if d.boot:
        _sub(os_, "kernel", d.boot.kernel)
        _sub(os_, "initrd", d.boot.initrd)
        _sub(os_, "cmdline", d.boot.cmdline)
    else:
        _sub(os_, "boot", dev="hd")
    features = _sub(root, "features")
    _sub(features, "acpi")
    if d.domain_type == "kvm":
        _sub(root, "cpu", mode="host-passthrough")
    elif d.domain_type == "qemu":
        # TCG: qemu64 plus RDRAND (the tiny guest's early entropy). Measured A/B on a
        # quiet host: the debian image reached SSH in 31-35 s with this, 38-54 s with
        # mode='maximum' (its AVX-era features cost under emulation); the tiny image
        # 3.6-3.8 s, against 4.0-4.1 s with 'maximum' and 4.5-4.6 s with bare qemu64.
        cpu = _sub(root, "cpu", mode="custom", match="exact")
        _sub(cpu, "model", "qemu64", fallback="forbid")
        _sub(cpu, "feature", policy="require", name="rdrand")
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")

    devices = _sub(root, "devices")
    for disk in d.disks:
        el = _sub(devices, "disk", type="file", device="disk")
        _sub(el, "driver", name="qemu", type=disk.fmt, cache="none" if not disk.readonly
             else "default")
        _sub(el, "source", file=disk.path)
        _sub(el, "target", dev=disk.target, bus="virtio")
        if disk.readonly:
            _sub(el, "readonly")
        if disk.serial:
            _sub(el, "serial", disk.serial)
    for nic in d.nics:
        if nic.network == USER_NETWORK:
            continue
        el = _sub(devices, "interface", type="network")
        _sub(el, "mac", address=nic.mac)
        _sub(el, "source", network=nic.network)
        _sub(el, "model", type="virtio")
        if nic.ip:
            el.append(filterref_element(BASE_FILTER, nic.ip))
    for share in d.shares:
        el = _sub(devices, "filesystem", type="mount", accessmode="passthrough")
        _sub(el, "driver", type="virtiofs")
        _sub(el, "source", dir=share.source)
        _sub(el, "target", dir=share.tag)
    serial = _sub(devices, "serial", type="pty")
    if d.console_log:
        _sub(serial, "log", file=d.console_log, append="off")
    _sub(serial, "target", port="0")
    _sub(devices, "console", type="pty")
    if d.video:
        _sub(_sub(devices, "video"), "model", type="vga")
    _sub(devices, "controller", type="usb", model="none")
    _sub(devices, "memballoon", model="none")
    user = [nic for nic in d.nics if nic.network == USER_NETWORK]
    if user:
        root.append(_user_netdev(user[0]))
    return _tostring(root)


def _user_netdev(nic: Nic) -> ET.Element:
    """User-mode networking with SSH forwarded from a loopback port, as QEMU arguments.

    libvirt 9.0 has `<interface type='user'>` but no port forwarding for it (its passt
    backend with <portForward> is refused by Debian's 9.0 here), so the netdev is passed
    through. The NIC sits in a fixed high PCI slot, clear of the ones libvirt assigns."""
    cmd = ET.Element(f"{{{QEMU_NS}}}commandline")
    args = ["-netdev", f"user,id=nbcuser0,hostfwd=tcp:127.0.0.1:{int(nic.host_port)}-:22",
            "-device", f"virtio-net-pci,netdev=nbcuser0,mac={_text(nic.mac)},"
                       "bus=pci.0,addr=0x1f"]
    for arg in args:
        ET.SubElement(cmd, f"{{{QEMU_NS}}}arg", value=arg)
    return cmd



def network_xml(name: str, cidr: str, mode: str, bridge: str,
                hostsdir: str | None = None) -> str:
    """A libvirt network with DHCP over the upper half of the subnet.

    The lower half is left for addresses nbcloud reserves per instance; with `hostsdir`,
    dnsmasq also reads reservations from the files of that folder (dhcp_files.py).
    """
    net = ipaddress.IPv4Network(cidr)
    hosts = list(net.hosts())
    gateway, half = hosts[0], len(hosts) // 2
    root = ET.Element("network")
    _sub(root, "name", name)
    if mode in ("nat", "routed", "open"):
        _sub(root, "forward", mode={"nat": "nat", "routed": "route", "open": "open"}[mode])
    _sub(root, "bridge", name=bridge, stp="off", delay="0")
    _sub(root, "domain", name=name, localOnly="yes")
    ip = _sub(root, "ip", address=str(gateway), netmask=str(net.netmask))
    dhcp = _sub(ip, "dhcp")
    _sub(dhcp, "range", start=str(hosts[half]), end=str(hosts[-1]))
    if hostsdir:
        _add_hostsdir(root, hostsdir)
    return _tostring(root)


def _add_hostsdir(root: ET.Element, hostsdir: str) -> None:
    options = _sub(root, f"{{{DNSMASQ_NS}}}options")
    _sub(options, f"{{{DNSMASQ_NS}}}option", value=f"dhcp-hostsdir={hostsdir}")


def with_hostsdir(text: str, hostsdir: str) -> str | None:
    """Network definition `text` with dnsmasq reading `hostsdir` too; None if it has
    dnsmasq options of its own already (they are left as they are)."""
    root = ET.fromstring(text)
    if root.find(f"{{{DNSMASQ_NS}}}options") is not None:
        return None
    _add_hostsdir(root, hostsdir)
    return _tostring(root)


def network_hostsdir(text: str) -> str:
    """The folder a network's dnsmasq reads reservation files from ('' if none)."""
    for option in ET.fromstring(text).iterfind(f"{{{DNSMASQ_NS}}}options/"
                                               f"{{{DNSMASQ_NS}}}option"):
        key, _, value = (option.get("value") or "").partition("=")
        if key == "dhcp-hostsdir":
            return value
    return ""


def dhcp_host_xml(mac: str, ip: str, name: str, lease_minutes: int | None = None) -> str:
    host = ET.Element("host", mac=_text(mac), ip=_text(ip), name=_text(name))
    if lease_minutes:   # dnsmasq's dhcp-host lease time (libvirt >= 6.3); 2 min at least
        _sub(host, "lease", expiry=str(lease_minutes), unit="minutes")
    return _tostring(host)


def dns_host_xml(ip: str, names: tuple[str, ...] | list[str]) -> str:
    """A `<dns><host>` record. dnsmasq answers `name` and `name.NETWORK` from it at once;
    a DHCP host entry alone gives a name only after the guest's first lease."""
    host = ET.Element("host", ip=_text(ip))
    for name in names:
        _sub(host, "hostname", name)
    return _tostring(host)


def parse_network(text: str) -> NetworkInfo:
    root = ET.fromstring(text)
    fwd = root.find("forward")
    mode = {"nat": "nat", "route": "routed", "open": "open"}.get(
        fwd.get("mode", "nat") if fwd is not None else "", "isolated")
    ip = root.find("ip")
    if ip is None:
        raise ValueError("network has no IPv4 address")
    iface = ipaddress.IPv4Interface(f"{ip.get('address')}/{ip.get('netmask') or ip.get('prefix')}")
    rng = ip.find("dhcp/range")
    hosts = tuple((h.get("mac", ""), h.get("ip", ""), h.get("name", ""))
                  for h in ip.findall("dhcp/host"))
    dns_hosts = tuple((h.get("ip", ""), tuple(n.text or "" for n in h.findall("hostname")))
                      for h in root.findall("dns/host"))
    bridge = root.find("bridge")
    return NetworkInfo(root.findtext("name", ""), bridge.get("name", "") if bridge is not None
                       else "", mode, iface.network, str(iface.ip),
                       rng.get("start", "") if rng is not None else "",
                       rng.get("end", "") if rng is not None else "", hosts, dns_hosts)


def pool_xml(name: str, path: str) -> str:
    root = ET.Element("pool", type="dir")
    _sub(root, "name", name)
    target = _sub(root, "target")
    _sub(target, "path", path)
    return _tostring(root)


def volume_xml(name: str, capacity: int, fmt: str,
               backing: tuple[str, str] | None = None) -> str:
    """A volume; with `backing=(path, fmt)` a copy-on-write overlay on that file."""
    root = ET.Element("volume")
    _sub(root, "name", name)
    _sub(root, "capacity", str(capacity), unit="bytes")
    target = _sub(root, "target")
    _sub(target, "format", type=fmt)
    if backing:
        store = _sub(root, "backingStore")
        _sub(store, "path", backing[0])
        _sub(store, "format", type=backing[1])
    return _tostring(root)


@dataclass(frozen=True)
class IOTune:
    """Per-disk caps QEMU enforces (libvirt `<iotune>`): what makes a tier a tier."""
    total_bytes_sec: int
    total_iops_sec: int


@dataclass(frozen=True)
class DataDisk:
    """A disk attached after the domain was made: a data volume or an ISO.

    `device='disk'` with `readonly` on bus virtio is how nbcloud attaches ISOs (the tiny
    guest has no IDE/SATA/SCSI cdrom driver); `device='cdrom'` on bus sata is what full
    images prefer."""
    path: str
    target: str                   # vdb, vdc, ... (sda, ... on sata)
    fmt: str = "qcow2"
    serial: str | None = None
    readonly: bool = False
    device: str = "disk"          # 'disk' or 'cdrom'
    bus: str = "virtio"           # 'virtio' or 'sata'
    iotune: IOTune | None = None


def disk_element(d: DataDisk) -> ET.Element:
    el = ET.Element("disk", type="file", device=d.device)
    # cache=none is O_DIRECT on the host, so the tier's caps, not the host page cache,
    # decide what the guest measures.
    _sub(el, "driver", name="qemu", type=d.fmt, cache="default" if d.readonly else "none")
    _sub(el, "source", file=d.path)
    _sub(el, "target", dev=d.target, bus=d.bus)
    if d.iotune:
        tune = _sub(el, "iotune")
        _sub(tune, "total_bytes_sec", str(d.iotune.total_bytes_sec))
        _sub(tune, "total_iops_sec", str(d.iotune.total_iops_sec))
    if d.readonly:
        _sub(el, "readonly")
    if d.serial:
        _sub(el, "serial", d.serial)
    return el


def disk_xml(d: DataDisk) -> str:
    """The `<disk>` device XML for attachDeviceFlags."""
    return _tostring(disk_element(d))


def _int_text(parent: ET.Element | None, tag: str) -> int:
    text = parent.findtext(tag) if parent is not None else None
    return int(text) if text and text.isdigit() else 0


def parse_disks(domain_text: str) -> list[DataDisk]:
    """The file-backed disks of a domain XML, in document order."""
    out = []
    for el in ET.fromstring(domain_text).findall("devices/disk"):
        source, target, driver = el.find("source"), el.find("target"), el.find("driver")
        tune = el.find("iotune")
        iotune = None
        if tune is not None:
            iotune = IOTune(_int_text(tune, "total_bytes_sec"), _int_text(tune, "total_iops_sec"))
        out.append(DataDisk(
            path=source.get("file", "") if source is not None else "",
            target=target.get("dev", "") if target is not None else "",
            fmt=driver.get("type", "raw") if driver is not None else "raw",
            serial=el.findtext("serial"), readonly=el.find("readonly") is not None,
            device=el.get("device", "disk"),
            bus=target.get("bus", "") if target is not None else "", iotune=iotune))
    return out


def snapshot_xml(name: str, skip: tuple[str, ...] = ()) -> str:
    """An internal snapshot; disks whose targets are in `skip` (read-only ones, like the
    seed) are left out, since only qcow2 disks can hold one."""
    root = ET.Element("domainsnapshot")
    _sub(root, "name", name)
    if skip:
        disks = _sub(root, "disks")
        for target in skip:
            _sub(disks, "disk", name=target, snapshot="no")
    return _tostring(root)


def readonly_disks(text: str) -> tuple[str, ...]:
    """Targets of the read-only disks in a domain's XML."""
    root = ET.fromstring(text)
    return tuple(d.find("target").get("dev", "") for d in root.findall("devices/disk")
                 if d.find("readonly") is not None and d.find("target") is not None)


def resized_domain_xml(text: str, vcpus: int, memory: int) -> str:
    """A domain's XML with new vCPU count and memory size (everything else kept)."""
    root = ET.fromstring(text)
    for tag in ("memory", "currentMemory"):
        el = root.find(tag)
        if el is not None:
            el.text, el.attrib = str(memory // 1024), {"unit": "KiB"}
    vcpu = root.find("vcpu")
    vcpu.text = str(vcpus)
    vcpu.attrib.pop("current", None)
    return _tostring(root)
