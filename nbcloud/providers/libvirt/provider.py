"""LibvirtProvider: every call nbcloud makes to libvirt goes through this class.

Its operations live in one mixin per kind of object: storage.py, volumes.py, networks.py,
domains.py, devices.py, nwfilters.py, stats.py, screen.py, adoption.py, clones.py.
"""
from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import libvirt

from nbcloud.core.errors import HostError
from nbcloud.providers.base import Provider
from nbcloud.providers.libvirt.adoption import AdoptionMixin
from nbcloud.providers.libvirt.clones import CloneMixin
from nbcloud.providers.libvirt.compute import ComputeMixin
from nbcloud.providers.libvirt.devices import DeviceMixin
from nbcloud.providers.libvirt.domains import SnapshotMixin, suppress_libvirt  # noqa: F401  (re-exported)
from nbcloud.providers.libvirt.firewall import FirewallMixin
from nbcloud.providers.libvirt.forwards import ForwardMixin
from nbcloud.providers.libvirt.haproxy import BalancerMixin
from nbcloud.providers.libvirt.local import is_local, storage_paths  # noqa: F401
from nbcloud.providers.libvirt.networks import NetworkMixin
from nbcloud.providers.libvirt.nwfilters import NWFilterMixin
from nbcloud.providers.libvirt.screen import ScreenMixin
from nbcloud.providers.libvirt.stats import StatsMixin
from nbcloud.providers.libvirt.storage import StorageMixin
from nbcloud.providers.libvirt.volumes import IMAGE_POOL, INSTANCE_POOL, DataVolumeMixin

# libvirt prints every error to stderr by default; we raise our own messages instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class LibvirtProvider(Provider, ComputeMixin, StorageMixin, DataVolumeMixin, NetworkMixin,
                      SnapshotMixin, DeviceMixin, NWFilterMixin, FirewallMixin, ForwardMixin,
                      BalancerMixin, StatsMixin, ScreenMixin, AdoptionMixin, CloneMixin):
    """A connection to one libvirt URI and the operations on it."""

    name = "libvirt"
    capabilities = frozenset({"compute", "volumes", "cdroms", "storage-pools", "networks",
                              "secgroups", "floating", "loadbalancers", "dns", "folders",
                              "snapshots", "screenshots", "console", "serial", "stats", "adopt",
                              "clones"})

    def __init__(self, uri: str):
        self.uri = uri
        self.paths = storage_paths(uri)
        try:
            self.conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise HostError(f"cannot connect to {uri}: {exc.get_error_message()} "
                            "(start the daemon with `nbcloud host up`)") from None
        # networkUpdate of one network is not atomic across threads of ours.
        self._net_lock = threading.Lock()
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbcloud-net")
        self._dhcp_background = ThreadPoolExecutor(max_workers=1,
                                                   thread_name_prefix="nbcloud-dhcp")
        self._dhcp_pending = {}
        # Address reservations and DNS records go to the host whose network holds the
        # DHCP server: this one, unless a cloud of several hosts says otherwise.
        self.net_authority = self

    def prepare(self) -> None:
        """The instance and image pools, the console log folder of a session daemon
        (QEMU, run as this user, writes there), and the anti-spoofing filter every NIC
        on a libvirt network references (firewall.py)."""
        for pool in (INSTANCE_POOL, IMAGE_POOL):
            self.ensure_pool(pool, str(self.paths[pool]))
        if self.uri.startswith("qemu:///session"):
            self.paths["logs"].mkdir(parents=True, exist_ok=True)
        elif not self.is_test_driver:
            self.ensure_antispoof_filter()

    @property
    def images(self):
        """The image store (the `nbcloud-images` pool)."""
        if getattr(self, "_images", None) is None:
            from nbcloud.providers.libvirt.images import ImageStore
            self._images = ImageStore(self)
        return self._images

    def close(self) -> None:
        self._background.shutdown(wait=True)
        self._dhcp_background.shutdown(wait=True)
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

    def capacity(self) -> tuple[int, int]:
        """The host's logical CPUs and memory in bytes (virNodeGetInfo)."""
        info = self.conn.getInfo()  # [model, memory MiB, cpus, MHz, nodes, sockets, ...]
        return int(info[2]), int(info[1]) << 20

    def domain_types(self) -> list[str]:
        """Domain types the host offers for x86_64 guests ('kvm', 'qemu', 'test')."""
        caps = ET.fromstring(self.conn.getCapabilities())
        types: list[str] = []
        for guest in caps.findall("guest"):
            arch = guest.find("arch")
            if arch is not None and arch.get("name") in ("x86_64", "i686"):
                types += [d.get("type", "") for d in arch.findall("domain")]
        return sorted(set(types))
