"""LibvirtBackend: every call nbcloud makes to libvirt goes through this class."""
from __future__ import annotations

import ipaddress
import re
import random
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import libvirt

from ...errors import AlreadyExists, CloudError, HostError, NotFound, NotManaged
from . import xml as lx

# libvirt prints every error to stderr by default; we raise our own messages instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "unknown", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "stopping", libvirt.VIR_DOMAIN_SHUTOFF: "stopped",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


class LibvirtBackend:
    """A connection to one libvirt URI and the operations on it."""

    def __init__(self, uri: str):
        self.uri = uri
        try:
            self.conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise HostError(f"cannot connect to {uri}: {exc.get_error_message()} "
                            "(start the daemon with `nbcloud host up`)") from None
        # networkUpdate of one network is not atomic across threads of ours.
        self._net_lock = threading.Lock()
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbcloud-net")

    def close(self) -> None:
        self._background.shutdown(wait=True)
        try:
            self.conn.close()
        except libvirt.libvirtError:
            pass

    # ----- host facts -------------------------------------------------------------------
    @property
    def is_test_driver(self) -> bool:
        return self.uri.startswith("test:")

    def versions(self) -> dict[str, str]:
        def fmt(v: int) -> str:
            return f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"
        return {"libvirt": fmt(self.conn.getLibVersion()),
                "hypervisor": fmt(self.conn.getVersion()),
                "uri": self.conn.getURI()}

    def domain_types(self) -> list[str]:
        """Domain types the host offers for x86_64 guests ('kvm', 'qemu', 'test')."""
        caps = ET.fromstring(self.conn.getCapabilities())
        types: list[str] = []
        for guest in caps.findall("guest"):
            arch = guest.find("arch")
            if arch is not None and arch.get("name") in ("x86_64", "i686"):
                types += [d.get("type", "") for d in arch.findall("domain")]
        return sorted(set(types))

    # ----- pools and volumes --------------------------------------------------------------
    def ensure_pool(self, name: str, path: str) -> bool:
        """Define, build, start and autostart a dir pool; True if anything was changed."""
        changed = False
        try:
            pool = self.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            pool = self.conn.storagePoolDefineXML(lx.pool_xml(name, path), 0)
            pool.build(0)
            changed = True
        if not pool.isActive():
            pool.create(0)
            changed = True
        if not pool.autostart():
            pool.setAutostart(1)
            changed = True
        return changed

    def pool(self, name: str) -> libvirt.virStoragePool:
        try:
            pool = self.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            raise NotFound(f"storage pool {name!r} does not exist (run `nbcloud host up`)") \
                from None
        if not pool.isActive():
            pool.create(0)
        return pool

    def pool_names(self) -> list[str]:
        return sorted(p.name() for p in self.conn.listAllStoragePools(0))

    def volumes(self, pool: str) -> dict[str, tuple[str, int]]:
        """name -> (path, allocation bytes) of the volumes in `pool`."""
        p = self.pool(pool)
        p.refresh(0)
        return {v.name(): (v.path(), v.info()[2]) for v in p.listAllVolumes(0)}

    def volume_path(self, pool: str, name: str) -> str:
        try:
            return self.pool(pool).storageVolLookupByName(name).path()
        except libvirt.libvirtError:
            raise NotFound(f"volume {name!r} does not exist in pool {pool!r}") from None

    def upload_volume(self, pool: str, name: str, source: Path, fmt: str = "raw") -> str:
        """Create volume `name` from a local file through libvirt's stream API."""
        size = source.stat().st_size
        p = self.pool(pool)
        try:
            p.storageVolLookupByName(name).delete(0)
        except libvirt.libvirtError:
            pass
        vol = p.createXML(lx.volume_xml(name, size, fmt), 0)
        stream = self.conn.newStream(0)
        try:
            vol.upload(stream, 0, size, 0)
            with open(source, "rb") as f:
                stream.sendAll(lambda _s, n, fh: fh.read(n), f)
            stream.finish()
        except BaseException:
            stream.abort()
            vol.delete(0)
            raise
        return vol.path()

    def create_overlay(self, pool: str, name: str, backing_path: str, backing_fmt: str,
                       capacity: int) -> str:
        vol = self.pool(pool).createXML(
            lx.volume_xml(name, capacity, "qcow2", (backing_path, backing_fmt)), 0)
        return vol.path()

    def delete_volume(self, pool: str, name: str) -> bool:
        try:
            self.pool(pool).storageVolLookupByName(name).delete(0)
            return True
        except (libvirt.libvirtError, NotFound):
            return False

    # ----- networks ---------------------------------------------------------------------
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

    def reserve_address(self, network: str, mac: str,
                        hostname: str) -> tuple[str, int, str, Future]:
        """Reserve a free address in the lower half of `network` for `mac`.

        Returns (ip, prefix length, gateway, live). The reservation is a DHCP host entry,
        so the guest gets the same address by DHCP and the network's DNS knows `hostname`.
        It is written to the network's definition at once (which refuses a duplicate, so
        two notebooks cannot take one address); the running dnsmasq learns it in the
        background, because libvirt restarts dnsmasq for that (about 0.5 s): wait on
        `live` before relying on DHCP or DNS.
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
        live = self._background.submit(self._update_live, network,
                                       libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, host)
        return ip, info.network.prefixlen, info.gateway, live

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

    # ----- domains ----------------------------------------------------------------------
    @staticmethod
    def random_mac() -> str:
        return "52:54:00:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))

    def _lookup(self, name: str) -> libvirt.virDomain:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError:
            raise NotFound(f"instance {name!r} does not exist") from None

    def exists(self, name: str) -> bool:
        try:
            self.conn.lookupByName(name)
            return True
        except libvirt.libvirtError:
            return False

    def metadata(self, name: str) -> dict[str, str]:
        """nbcloud's metadata of domain `name`; NotManaged if it has none."""
        return self._metadata(self._lookup(name))

    @staticmethod
    def _metadata(dom: libvirt.virDomain) -> dict[str, str]:
        try:
            text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, lx.NS, 0)
        except libvirt.libvirtError:
            raise NotManaged(f"domain {dom.name()!r} was not made by nbcloud (it has no "
                             "nbcloud metadata): nbcloud leaves it alone") from None
        return lx.parse_metadata(text)

    def set_metadata(self, name: str, values: dict[str, str]) -> None:
        dom = self._lookup(name)
        self._metadata(dom)
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if dom.isActive():
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, lx.metadata_xml(values),
                        "nbcloud", lx.NS, flags)

    def managed(self) -> dict[str, dict[str, str]]:
        """name -> metadata of every domain nbcloud made on this host."""
        out = {}
        for dom in self.conn.listAllDomains(0):
            try:
                out[dom.name()] = self._metadata(dom)
            except NotManaged:
                continue
        return out

    def define(self, d: lx.DomainDef) -> str:
        """Define domain `d` (validated against libvirt's schema); return its UUID."""
        if self.exists(d.name):
            raise AlreadyExists(f"instance {d.name!r} exists already: pick another name or "
                                "delete it first")
        flags = getattr(libvirt, "VIR_DOMAIN_DEFINE_VALIDATE", 0)
        try:
            dom = self.conn.defineXMLFlags(lx.domain_xml(d), flags)
        except libvirt.libvirtError as exc:
            raise CloudError(f"libvirt refused instance {d.name!r}: "
                             f"{exc.get_error_message()}") from None
        return dom.UUIDString()

    def start(self, name: str) -> None:
        dom = self._lookup(name)
        self._metadata(dom)
        if not dom.isActive():
            try:
                dom.create()
            except libvirt.libvirtError as exc:
                raise CloudError(f"instance {name!r} did not start: "
                                 f"{exc.get_error_message()}") from None

    def state(self, name: str) -> str:
        return _STATES.get(self._lookup(name).state()[0], "unknown")

    def uuid(self, name: str) -> str:
        return self._lookup(name).UUIDString()

    def stop(self, name: str, timeout: float = 30.0) -> str:
        """ACPI shutdown, then power off after `timeout` s; returns 'graceful' or 'forced'."""
        dom = self._lookup(name)
        self._metadata(dom)
        if not dom.isActive():
            return "graceful"
        try:
            dom.shutdown()
        except libvirt.libvirtError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not dom.isActive():
                return "graceful"
            time.sleep(0.1)
        self._destroy(dom)
        return "forced"

    @staticmethod
    def _destroy(dom: libvirt.virDomain) -> None:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            if dom.isActive():
                raise

    def reboot(self, name: str) -> None:
        dom = self._lookup(name)
        self._metadata(dom)
        dom.reboot(0)

    def set_cpu_share(self, name: str, share: float) -> bool:
        """Cap each vCPU at `share` of a host core (shared-CPU flavors), live.

        False where libvirt has no cgroup CPU controller (a daemon started without
        systemd in some containers): the flavor's share is then not enforced."""
        if share >= 1.0 or self.is_test_driver:
            return True
        dom = self._lookup(name)
        period = 100000
        params = {"vcpu_period": period, "vcpu_quota": int(period * share)}
        try:
            dom.setSchedulerParametersFlags(params, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            if "cgroup" in (exc.get_error_message() or ""):
                return False
            raise
        return True

    def delete(self, name: str) -> dict[str, str]:
        """Power off and undefine a domain nbcloud made; return its metadata."""
        dom = self._lookup(name)
        meta = self._metadata(dom)
        if dom.isActive():
            self._destroy(dom)
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                 | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 0))
        dom.undefineFlags(flags)
        return meta

    def domain_xml_desc(self, name: str) -> str:
        return self._lookup(name).XMLDesc(0)

    def console_log_path(self, name: str) -> str | None:
        root = ET.fromstring(self._lookup(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        log = root.find("devices/serial/log")
        return log.get("file") if log is not None else None

    def stop_everything(self) -> list[str]:
        """Power off running nbcloud instances and stop active networks (host down)."""
        done = []
        for dom in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                self._metadata(dom)
            except NotManaged:
                done.append(f"left {dom.name()} running (not nbcloud's)")
                continue
            self._destroy(dom)
            done.append(f"powered off {dom.name()}")
        for net in self.conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
            net.destroy()
            done.append(f"stopped network {net.name()}")
        return done

    # ----- accelerator probe --------------------------------------------------------------
    def probe_boot(self, d: lx.DomainDef, marker: bytes, timeout: float) -> str | None:
        """Boot transient domain `d` and watch its console for `marker`.

        Returns None if the marker showed within `timeout` s, else why not. The domain is
        always destroyed afterwards, and its console log removed."""
        assert d.console_log, "the probe reads the console log"
        log = Path(d.console_log)
        log.unlink(missing_ok=True)
        try:
            dom = self.conn.createXML(lx.domain_xml(d), 0)
        except libvirt.libvirtError as exc:
            log.unlink(missing_ok=True)
            # QEMU's own words, without libvirt's preamble and QEMU's timestamps
            words = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z\s*", "",
                           exc.get_error_message() or "").split("monitor: ")[-1]
            return f"the probe domain did not start: {' '.join(words.split())[:160]}"
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if log.exists() and marker in log.read_bytes():
                    return None
                if not dom.isActive():
                    return "the probe domain stopped before reaching init"
                time.sleep(0.1)
            return f"the probe boot did not reach init within {timeout:.0f} s"
        finally:
            with suppress_libvirt():
                dom.destroy()
            log.unlink(missing_ok=True)


@contextmanager
def suppress_libvirt() -> Iterator[None]:
    try:
        yield
    except (libvirt.libvirtError, OSError):
        pass


def is_local(uri: str) -> bool:
    """Whether files the daemon writes (console logs) are on this machine."""
    from urllib.parse import urlsplit
    parts = urlsplit(uri)
    return "+" not in parts.scheme and parts.hostname in (None, "", "localhost")
