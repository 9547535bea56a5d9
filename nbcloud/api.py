"""The Python API: `nbcloud.Cloud`. The magics and the command line are thin skins on it."""
from __future__ import annotations

from pathlib import Path

from . import accel, config
from .backend.libvirt import LibvirtBackend
from .cdrom import CdRoms
from .errors import NotFound
from .images.store import IMAGE_POOL, Image, ImageStore
from .instances import DEFAULT_NETWORK, INSTANCE_POOL, Instance, Instances  # noqa: F401
from .inventory import Inventory
from .keys import Keys
from .networks import DEFAULT_BRIDGE, Network, Networks  # noqa: F401
from .pools import Pools
from .recovery import recover
from .stacks import Stacks
from .volumes import Volume, Volumes  # noqa: F401

DEFAULT_CIDR = "10.77.0.0/24"


def storage_paths(uri: str) -> dict[str, Path]:
    """Where the instance and image pools and console logs live for `uri`."""
    if uri.startswith("qemu:///system"):
        root, logs = Path("/var/lib/nbcloud"), Path("/var/log/libvirt/qemu")
    elif uri.startswith("test:"):
        root = logs = Path("/nbcloud-test")
    else:
        root = config.home() / "pools"
        logs = config.home() / "console"
    return {INSTANCE_POOL: root / "instances", IMAGE_POOL: root / "images", "logs": logs}


class Cloud:
    """One libvirt host seen as a small IaaS cloud.

    >>> cloud = Cloud("qemu:///system")
    >>> web = cloud.instances.create("web")
    >>> web.ssh("uname -a")
    """

    def __init__(self, uri: str | None = None, *, inventory: Inventory | None = None,
                 ssh_timeout: float = 120.0):
        self.uri = uri or config.default_uri()
        self.backend = LibvirtBackend(self.uri)
        self.inventory = inventory or Inventory()
        self.ssh_timeout = ssh_timeout
        self.paths = storage_paths(self.uri)
        for pool in (INSTANCE_POOL, IMAGE_POOL):
            self.backend.ensure_pool(pool, str(self.paths[pool]))
        self.images = ImageStore(self.backend)
        self.instances = Instances(self)
        self.volumes = Volumes(self)
        self.pools = Pools(self)
        self.cdroms = CdRoms(self)
        self.networks = Networks(self)
        self.keys = Keys(self)
        self.stacks = Stacks(self)
        self._accel: dict | None = None
        # a corrupt or empty inventory is rebuilt from libvirt; dead operations settled
        self.recovery: list[str] = recover(self)

    def recover(self, op_id: int, how: str = "rollback") -> list[str]:
        """Settle interrupted operation `op_id`; only "rollback" of an instance create is
        supported (what it half-made is deleted). Returns what was removed."""
        from .errors import CloudError
        from .recovery import rollback
        if how != "rollback":
            raise CloudError(f"recover: {how!r} is not supported; use 'rollback' "
                              "(resume is not implemented)")
        return rollback(self, op_id)

    def close(self) -> None:
        self.instances.close()
        self.backend.close()

    def __repr__(self) -> str:
        return f"Cloud({self.uri!r})"

    # ----- accelerator ------------------------------------------------------------------
    def accelerator(self, probe: bool = True) -> dict:
        """{'accelerator': 'kvm'|'tcg'|'test', 'reason': ...}; probed once, then cached."""
        if self._accel is None:
            self._accel = accel.cached(self.backend)
        if self._accel is None or (probe and "not probed" in self._accel["reason"]):
            try:
                tiny: Image | None = self.images.get("tiny")
            except NotFound:
                tiny = None
            self._accel = accel.probe(self.backend, tiny, self.paths["logs"])
        return self._accel

    def build_tiny(self, progress=None) -> Image:
        """Build (or reuse) the tiny image and store it in the image pool."""
        from .images.tiny import build_tiny
        tiny = build_tiny(config.cache_dir(), progress=progress)
        return self.images.put_kernel_image("tiny", tiny.kernel, tiny.initrd, tiny.cmdline,
                                            tiny.digest)

    def import_image(self, name: str, source: str, *, sha256: str | None = None,
                     progress=None) -> Image:
        """Import a qcow2/raw disk image from a local file or an http(s) URL (streamed;
        checksum verified when given; nothing left behind on failure)."""
        return self.images.import_disk(name, source, sha256=sha256, progress=progress,
                                       spool_dir=config.cache_dir())

    def ensure_default_network(self) -> bool:
        """The `nbcloud` NAT network, defined, started and autostarted; True if changed."""
        return self.backend.ensure_network(DEFAULT_NETWORK, DEFAULT_CIDR, "nat",
                                           DEFAULT_BRIDGE)

    def build_debian(self, name: str = "debian", progress=None) -> Image:
        """Build (or reuse) the Debian cloud-init image and store it in the image pool."""
        from .images.debian import build_debian
        built = build_debian(config.cache_dir(), progress=progress)
        return self.images.put_disk_image(name, built.disk, "qcow2", built.digest,
                                          kernel=built.kernel, initrd=built.initrd,
                                          cmdline=built.cmdline)
