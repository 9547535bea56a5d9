"""LibvirtBackend: every call nbcloud makes to libvirt goes through this class.

Its operations live in one mixin per kind of object: storage.py, networks.py, domains.py,
devices.py, nwfilters.py.
"""
from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import libvirt

from nbcloud.core.errors import HostError
from nbcloud.providers.libvirt.adoption import AdoptionMixin
from nbcloud.providers.libvirt.devices import DeviceMixin
from nbcloud.providers.libvirt.domains import SnapshotMixin, suppress_libvirt  # noqa: F401  (re-exported)
from nbcloud.providers.libvirt.networks import NetworkMixin
from nbcloud.providers.libvirt.nwfilters import NWFilterMixin
from nbcloud.providers.libvirt.screen import ScreenMixin
from nbcloud.providers.libvirt.stats import StatsMixin
from nbcloud.providers.libvirt.storage import StorageMixin

# libvirt prints every error to stderr by default; we raise our own messages instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class LibvirtBackend(StorageMixin, NetworkMixin, SnapshotMixin, DeviceMixin, NWFilterMixin,
                     StatsMixin, ScreenMixin, AdoptionMixin):
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


def is_local(uri: str) -> bool:
    """Whether files the daemon writes (console logs) are on this machine."""
    parts = urlsplit(uri)
    return "+" not in parts.scheme and parts.hostname in (None, "", "localhost")
