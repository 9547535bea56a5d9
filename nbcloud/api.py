"""The Python API: `nbcloud.Cloud`. The magics and the command line are thin skins on it.

`Cloud` builds everything once: the provider for its URI, the context the services share,
the services (services/catalog.py), and the workflows that compose them (stacks, instance
pools and their autoscaler, adoption, recovery). Nothing below it knows it exists.
"""
from __future__ import annotations

from nbcloud.context import Context
from nbcloud.core import config
from nbcloud.core.events import POOLS_CHANGED
from nbcloud.inventory import Inventory, Records
from nbcloud.providers import open_provider
from nbcloud.providers.types import Image
from nbcloud.services.catalog import Services
from nbcloud.workflows.autoscaler import Autoscaler
from nbcloud.workflows.instance_pools import InstancePools
from nbcloud.workflows.rebuild import recover
from nbcloud.workflows.stacks import Stacks


class Cloud:
    """One cloud (libvirt hosts, or an OpenStack cloud) seen as a small IaaS cloud.

    >>> cloud = Cloud("qemu:///system")
    >>> web = cloud.instances.create("web")
    >>> web.ssh("uname -a")
    """

    def __init__(self, uri: str | None = None, *, inventory: Inventory | None = None,
                 ssh_timeout: float = 120.0, rebuild_empty: bool = True):
        self.uri = uri or config.default_uri()
        self.provider = open_provider(self.uri)
        self.provider.prepare()
        self.inventory = inventory or Inventory()
        self.ctx = Context(self.uri, self.provider,
                           Records(self.inventory, self.provider.inventory_key),
                           self.provider.paths, ssh_timeout=ssh_timeout)
        self.services = s = Services(self.ctx)
        self.instances, self.volumes, self.cdroms = s.instances, s.volumes, s.cdroms
        self.pools, self.networks, self.keys = s.pools, s.networks, s.keys
        self.secgroups, self.floating, self.sync = s.secgroups, s.floating, s.sync
        self.lbs, self.dns, self.projects = s.lbs, s.dns, s.projects
        self.hosts = s.hosts
        self.down_at_open = s.hosts.attach()   # the recorded hosts joined again
        self.ipools = InstancePools(s)
        self.autoscaler = Autoscaler(self.ipools, lambda: s.monitor)
        self.ctx.events.on(POOLS_CHANGED, self.autoscaler.follow)
        self.stacks = Stacks(s, self.ipools)
        # a corrupt or empty inventory is rebuilt from the provider; dead operations settled
        # (`rebuild_empty=False`: not an empty one, whose owner may want none of the
        # host's objects: the host agent, which acts on what its inventory holds)
        self.recovery: list[str] = recover(s, rebuild_empty)

    @classmethod
    def openstack(cls, name: str, **kwargs) -> Cloud:
        """Cloud `name` of the user's clouds.yaml (as `openstack --os-cloud NAME`)."""
        return cls(f"openstack://{name}", **kwargs)

    @property
    def images(self):
        """The image store (list, get, import, delete)."""
        return self.provider.images

    @property
    def paths(self):
        return self.ctx.paths

    @property
    def ssh_timeout(self) -> float:
        return self.ctx.ssh_timeout

    @ssh_timeout.setter
    def ssh_timeout(self, seconds: float) -> None:
        self.ctx.ssh_timeout = seconds

    @property
    def monitor(self):
        """This cloud's `Monitor`: one sampling thread, one bulk stats call per tick."""
        return self.services.monitor

    def recover(self, op_id: int, how: str = "rollback") -> list[str]:
        """Settle interrupted operation `op_id`: "rollback" undoes what it half-made,
        "resume" finishes it (workflows/settle.py says per verb). Returns what was done."""
        from nbcloud.workflows.settle import settle
        return settle(self.services, op_id, how)

    def adopt(self, name: str, kind: str = "instance", stack: str = "adhoc", *,
              ssh: bool = False, user: str | None = None, key: str | None = None) -> str:
        """Bring an object `name` made outside nbcloud into the inventory, in `stack`, so
        that plan, drift and destroy manage it (workflows/adopt.py). `ssh` pins an
        instance's SSH host key, to log in as `user` with login key `key`."""
        from nbcloud.workflows.adopt import adopt
        return adopt(self.services, name, kind, stack, ssh=ssh, user=user, key=key)

    def close(self) -> None:
        self.autoscaler.detach()
        self.services.close()
        self.provider.close()

    def __repr__(self) -> str:
        return f"Cloud({self.uri!r})"

    def flavors(self):
        """The instance types this cloud offers."""
        return self.provider.flavors()

    def create_flavor(self, name: str, vcpus: int, memory: int | str, *,
                      disk: int | str = "1G", share: float = 1.0,
                      ephemeral: int | str = 0):
        """Add flavor `name` to the cloud's catalogue (an OpenStack admin's): `vcpus`,
        `memory`, a root `disk`, a CPU `share` of each vCPU (< 1: shared), an
        `ephemeral` disk. The libvirt provider's catalogue is fixed: it refuses."""
        from nbcloud.core.flavors import flavor_request
        from nbcloud.core.spec import parse_size
        flavor = flavor_request(name, vcpus, memory, share=share, ephemeral=ephemeral)
        root = parse_size(disk, "disk")
        with self.ctx.inventory.operation("create", "flavor", name, vcpus=flavor.vcpus,
                                      memory=flavor.memory, share=flavor.cpu_share):
            return self.provider.create_flavor(flavor, root)

    def delete_flavor(self, name: str) -> None:
        """Remove flavor `name` from the cloud's catalogue (refused while servers use it)."""
        from nbcloud.core.flavors import check_flavor_name
        check_flavor_name(name)             # before the operations log or the engine
        with self.ctx.inventory.operation("delete", "flavor", name):
            self.provider.delete_flavor(name)

    # ----- accelerator and images ---------------------------------------------------------
    def accelerator(self, probe: bool = True) -> dict:
        """{'accelerator': 'kvm'|'tcg'|'test', 'reason': ...}; probed once, then cached."""
        return self.provider.accelerator(probe)

    def build_tiny(self, progress=None) -> Image:
        """Build (or reuse) the tiny image and store it in the image pool."""
        from nbcloud.images.tiny import build_tiny
        tiny = build_tiny(config.cache_dir(), progress=progress)
        return self.images.put_kernel_image("tiny", tiny.kernel, tiny.initrd, tiny.cmdline,
                                            tiny.digest, tiny.warm)

    def warm(self, image: str = "tiny", flavor: str = "t.nano", network: str | None = None,
             progress=None) -> str:
        """Build the warm base that instances of `image` at `flavor`'s shape are cloned
        from (booted once, saved), unless a fresh one exists; says what was done. A create
        builds it too, after its own instances, when it was missing."""
        from nbcloud.core.spec import InstanceSpec
        from nbcloud.services.launch import warm_base
        spec = InstanceSpec("warm-base", image, flavor,
                            (network or self.provider.default_network,))
        return warm_base(self.instances, spec, progress, build_missing=True,
                         asked=f"image warm {image}") or \
            f"the warm base of {image} for {flavor} is fresh"

    def import_image(self, name: str, source: str, *, sha256: str | None = None,
                     progress=None) -> Image:
        """Import a qcow2/raw disk image from a local file or an http(s) URL (streamed;
        checksum verified when given; nothing left behind on failure)."""
        return self.images.import_disk(name, source, sha256=sha256, progress=progress,
                                       spool_dir=config.cache_dir())

    def ensure_default_network(self) -> bool:
        """The default NAT network, defined, started and autostarted; True if changed."""
        return self.provider.ensure_default_network()

    def build_debian(self, name: str = "debian", progress=None) -> Image:
        """Build (or reuse) the Debian cloud-init image and store it in the image pool."""
        from nbcloud.images.debian import build_debian
        built = build_debian(config.cache_dir(), progress=progress)
        return self.images.put_disk_image(name, built.disk, "qcow2", built.digest,
                                          kernel=built.kernel, initrd=built.initrd,
                                          cmdline=built.cmdline)
