"""Domains (instances): define, start, stop, delete, metadata, the accelerator probe."""
from __future__ import annotations

import random
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import libvirt

from nbcloud.core.errors import (
    AlreadyExists,
    CloudError,
    HostError,
    NotFound,
    NotManaged,
)
from nbcloud.providers.libvirt import tapguard
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.adoption import parse_facts
from nbcloud.providers.libvirt.clone_domain import snapshot_without_clone_start

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "unknown", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "stopping", libvirt.VIR_DOMAIN_SHUTOFF: "stopped",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


def guarded_taps(dom: libvirt.virDomain) -> list[str]:
    """The taps of running `dom` that nbcloud guards itself (a warm clone's first run)."""
    try:
        return tapguard.taps_in(dom.XMLDesc(0))
    except libvirt.libvirtError:
        return []


class DomainMixin:
    conn: libvirt.virConnect
    is_test_driver: bool

    @staticmethod
    def random_mac() -> str:
        return "52:54:00:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))

    def _lookup(self, name: str) -> libvirt.virDomain:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                # e.g. the daemon died: saying "does not exist" would be a lie
                raise HostError(f"libvirt did not answer about instance {name!r}: "
                                f"{exc.get_error_message()}") from None
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
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                        lx.metadata_update_xml(values), "nbcloud", lx.NS, flags)

    def managed(self) -> dict[str, dict[str, str]]:
        """name -> metadata of every domain nbcloud made on this host."""
        out = {}
        for dom in self.conn.listAllDomains(0):
            try:
                out[dom.name()] = self._metadata(dom)
            except NotManaged:
                continue
        return out

    def domains_live(self) -> tuple[dict[str, dict], list[str]]:
        """One pass over every domain: (name -> {meta, vcpus, memory, running, uuid, nics}
        of nbcloud's, names of the others).

        One listing, then one XML read per domain: the XML is the only place libvirt
        keeps nbcloud's metadata and each NIC's network, and libvirtd answers it from
        memory (~0.2 ms a domain here). The bulk alternative, getAllDomainStats with
        VCPU/BALLOON/BLOCK, asks every running QEMU's monitor: 0.1-2 s on this TCG host
        (bench/st_live_read.py)."""
        ours, others = {}, []
        for dom in self.conn.listAllDomains(0):
            try:
                root = ET.fromstring(dom.XMLDesc(0))
            except libvirt.libvirtError:
                continue  # gone meanwhile
            mark = root.find(f"metadata/{{{lx.NS}}}instance")
            if mark is None:
                others.append(dom.name())
                continue
            ours[dom.name()] = {"meta": {c.tag.split("}")[-1]: c.text or "" for c in mark},
                                **parse_facts(root)}
        return ours, sorted(others)

    def domain_states(self) -> dict[str, str]:
        """name -> state ('running', 'stopped', 'paused', ...) of every domain, in one bulk
        call (the topology redraws on every change; a state() call per domain would not
        scale)."""
        stats = self.conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)
        return {dom.name(): _STATES.get(s.get("state.state"), "unknown") for dom, s in stats}

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
        taps = guarded_taps(dom)
        try:
            dom.shutdown()
        except libvirt.libvirtError:
            pass
        deadline = time.monotonic() + timeout
        how = "forced"
        while time.monotonic() < deadline:
            if not dom.isActive():
                how = "graceful"
                break
            time.sleep(0.1)
        else:
            self._destroy(dom)
        tapguard.forget(*taps)
        return how

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
        systemd in some containers, or any session daemon): the flavor's share is then
        not enforced."""
        if self.is_test_driver:
            return True
        dom = self._lookup(name)
        period = 100000
        # a quota of -1 lifts the cap (a resize from a shared to a dedicated flavor)
        params = {"vcpu_period": period,
                  "vcpu_quota": -1 if share >= 1.0 else int(period * share)}
        try:
            dom.setSchedulerParametersFlags(params, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_UNSUPPORTED or \
                    "cgroup" in (exc.get_error_message() or ""):
                return False
            raise
        return True

    def delete(self, name: str) -> dict[str, str]:
        """Power off and undefine a domain nbcloud made; return its metadata."""
        dom = self._lookup(name)
        meta = self._metadata(dom)
        if dom.isActive():
            taps = guarded_taps(dom)
            self._destroy(dom)
            tapguard.forget(*taps)
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                 | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        if not self.is_test_driver:  # the test driver refuses the NVRAM flag
            flags |= getattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 0)
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


class SnapshotMixin(DomainMixin):
    """Internal qcow2 snapshots (memory and disks, taken while running or stopped), and
    resizing, both on domains nbcloud made."""

    def snapshot_create(self, name: str, snapshot: str) -> None:
        dom = self._lookup(name)
        self._metadata(dom)
        try:
            skip = lx.readonly_disks(dom.XMLDesc(0))
            snap = dom.snapshotCreateXML(lx.snapshot_xml(snapshot, skip), 0)
            fixed = snapshot_without_clone_start(
                snap.getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE),
                dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            if fixed:   # a warm clone's: revertable like any instance's
                dom.snapshotCreateXML(fixed, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
        except libvirt.libvirtError as exc:
            raise CloudError(f"snapshot {snapshot!r} of {name!r} failed: "
                             f"{exc.get_error_message()}") from None

    def snapshot_names(self, name: str) -> list[str]:
        dom = self._lookup(name)
        return [s.getName() for s in dom.listAllSnapshots(0)]

    def snapshot_revert(self, name: str, snapshot: str) -> None:
        dom = self._lookup(name)
        self._metadata(dom)
        try:
            snap = dom.snapshotLookupByName(snapshot, 0)
        except libvirt.libvirtError:
            raise NotFound(f"instance {name!r} has no snapshot {snapshot!r} (it has: "
                           f"{', '.join(self.snapshot_names(name)) or 'none'})") from None
        dom.revertToSnapshot(snap, 0)

    def snapshot_delete(self, name: str, snapshot: str) -> None:
        dom = self._lookup(name)
        self._metadata(dom)
        try:
            dom.snapshotLookupByName(snapshot, 0).delete(0)
        except libvirt.libvirtError:
            raise NotFound(f"instance {name!r} has no snapshot {snapshot!r}") from None

    def resize(self, name: str, flavor) -> None:
        """Redefine the domain's vCPUs and memory to `flavor`'s (takes effect at its next
        start)."""
        dom = self._lookup(name)
        self._metadata(dom)
        xml = lx.resized_domain_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
                                    flavor.vcpus, flavor.memory)
        self.conn.defineXML(xml)
