"""The Python API: `nbcloud.Cloud`. The magics and the command line are thin skins on it."""
from __future__ import annotations

from pathlib import Path

from nbcloud.core import config
from nbcloud.core.errors import NotFound
from nbcloud.inventory import Inventory
from nbcloud.providers.libvirt import LibvirtBackend, accel
from nbcloud.providers.libvirt.images import IMAGE_POOL, Image, ImageStore
from nbcloud.services.cdroms import CdRoms
from nbcloud.services.dns import Dns
from nbcloud.services.floating import FloatingAddresses
from nbcloud.services.folders import Synced
from nbcloud.services.instances import (  # noqa: F401
    DEFAULT_NETWORK,
    INSTANCE_POOL,
    Instance,
    Instances,
)
from nbcloud.services.keys import Keys
from nbcloud.services.loadbalancers import LoadBalancers
from nbcloud.services.networks import DEFAULT_BRIDGE, Network, Networks  # noqa: F401
from nbcloud.services.secgroups import SecurityGroups
from nbcloud.services.storage_pools import Pools
from nbcloud.services.volumes import Volume, Volumes  # noqa: F401
from nbcloud.workflows.instance_pools import InstancePools
from nbcloud.workflows.rebuild import recover
from nbcloud.workflows.stacks import Stacks

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
        if self.uri.startswith("qemu:///session"):  # QEMU, run as this user, writes there
            self.paths["logs"].mkdir(parents=True, exist_ok=True)
        self.images = ImageStore(self.backend)
        self.instances = Instances(self)
        self.volumes = Volumes(self)
        self.pools = Pools(self)
        self.cdroms = CdRoms(self)
        self.networks = Networks(self)
        self.keys = Keys(self)
        self.stacks = Stacks(self)
        self.secgroups = SecurityGroups(self)
        self.floating = FloatingAddresses(self)
        self.sync = Synced(self)
        self.lbs = LoadBalancers(self)
        self.dns = Dns(self)
        self.ipools = InstancePools(self)
        self._accel: dict | None = None
        self._monitor = None   # the sampler thread, made on first use (monitor.py)
        # a corrupt or empty inventory is rebuilt from libvirt; dead operations settled
        self.recovery: list[str] = recover(self)

    def recover(self, op_id: int, how: str = "rollback") -> list[str]:
        """Settle interrupted operation `op_id`: "rollback" undoes what it half-made,
        "resume" finishes it (interrupted.py says per verb). Returns what was done."""
        from nbcloud.workflows.settle import settle
        return settle(self, op_id, how)

    @property
    def monitor(self):
        """This cloud's `Monitor`: one sampling thread, one bulk stats call per tick."""
        if self._monitor is None:
            from nbcloud.services.monitor import Monitor
            self._monitor = Monitor(self)
        return self._monitor

    def adopt(self, name: str, kind: str = "instance", stack: str = "adhoc", *,
              ssh: bool = False, user: str | None = None, key: str | None = None) -> str:
        """Bring libvirt object `name` (made outside nbcloud) into the inventory, in
        `stack`, so that plan, drift and destroy manage it (adopt.py). `ssh` pins an
        instance's SSH host key, to log in as `user` with login key `key`."""
        from nbcloud.workflows.adopt import adopt
        return adopt(self, name, kind, stack, ssh=ssh, user=user, key=key)

    def close(self) -> None:
        if self._monitor is not None:   # stop sampling before the connection goes
            self._monitor.close()
            self._monitor = None
        self.dns.stop_checker()
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
        from nbcloud.images.tiny import build_tiny
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
        from nbcloud.images.debian import build_debian
        built = build_debian(config.cache_dir(), progress=progress)
        return self.images.put_disk_image(name, built.disk, "qcow2", built.digest,
                                          kernel=built.kernel, initrd=built.initrd,
                                          cmdline=built.cmdline)
