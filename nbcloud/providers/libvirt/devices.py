"""Devices of a domain that come and go: data volumes and cdroms, attached and detached."""
from __future__ import annotations

import time

import libvirt

from nbcloud.core.errors import CloudError, NotFound
from nbcloud.providers.libvirt import xml as lx


class DeviceMixin:
    conn: libvirt.virConnect

    def _domain(self, name: str) -> libvirt.virDomain:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError:
            raise NotFound(f"instance {name!r} does not exist") from None

    def domain_disks(self, name: str, inactive: bool = False) -> list[lx.DataDisk]:
        """The disks of domain `name`: running ones, or with `inactive` the persistent
        definition's."""
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        return lx.parse_disks(self._domain(name).XMLDesc(flags))

    def disk_targets(self, name: str) -> set[str]:
        """Target names taken in the running or the persistent definition."""
        return {d.target for inactive in (False, True)
                for d in self.domain_disks(name, inactive)}

    def disk_users(self, path: str) -> list[tuple[str, str]]:
        """(domain, target) of every domain (running or defined) that has file `path`."""
        users = []
        for dom in self.conn.listAllDomains(0):
            for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
                try:
                    disks = lx.parse_disks(dom.XMLDesc(flags))
                except libvirt.libvirtError:  # undefined meanwhile
                    break
                hits = [(dom.name(), d.target) for d in disks if d.path == path]
                if hits:
                    users += hits
                    break
        return users

    def attach_disk(self, name: str, disk: lx.DataDisk) -> bool:
        """Hot-plug `disk` and add it to the definition; True if it went in live too."""
        dom = self._domain(name)
        live = bool(dom.isActive())
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if live:
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        try:
            dom.attachDeviceFlags(lx.disk_xml(disk), flags)
        except libvirt.libvirtError as exc:
            raise CloudError(f"libvirt did not attach {disk.serial or disk.path} to "
                             f"{name!r}: {exc.get_error_message()}") from None
        return live

    def detach_disk(self, name: str, target: str, timeout: float = 30.0) -> None:
        """Remove disk `target` from the definition and unplug it from the running guest.

        The unplug is a request the guest answers (ACPI eject): wait up to `timeout`
        s for the device to be gone."""
        dom = self._domain(name)
        for live in (True, False):  # the guest first: if it refuses, nothing changed
            if live and not dom.isActive():
                continue
            flags = 0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE
            disks = [d for d in lx.parse_disks(dom.XMLDesc(flags)) if d.target == target]
            if not disks:
                continue
            affect = libvirt.VIR_DOMAIN_AFFECT_LIVE if live else libvirt.VIR_DOMAIN_AFFECT_CONFIG
            try:
                dom.detachDeviceFlags(lx.disk_xml(disks[0]), affect)
            except libvirt.libvirtError as exc:
                raise CloudError(f"libvirt did not detach {target} from {name!r}: "
                                 f"{exc.get_error_message()}") from None
        deadline = time.monotonic() + timeout
        while dom.isActive() and any(d.target == target for d in self.domain_disks(name)):
            if time.monotonic() > deadline:
                raise CloudError(f"instance {name!r} did not release {target} within "
                                 f"{timeout:.0f} s (it is out of the definition and goes "
                                 "when the guest lets go)")
            time.sleep(0.2)

    def block_resize(self, name: str, target: str, capacity: int) -> None:
        """Grow disk `target` of running domain `name` to `capacity` bytes, live."""
        try:
            self._domain(name).blockResize(target, capacity,
                                           libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        except libvirt.libvirtError as exc:
            raise CloudError(f"libvirt did not resize {target} of {name!r}: "
                             f"{exc.get_error_message()}") from None

    def is_running(self, name: str) -> bool:
        return bool(self._domain(name).isActive())
