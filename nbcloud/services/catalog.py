"""The services of one cloud, made from its context in dependency order.

Each service gets the context and the sibling services it uses, and nothing else: the
workflows above (stacks, instance pools, adoption, recovery) receive this catalog.
"""
from __future__ import annotations

from nbcloud.context import Context
from nbcloud.services.cdroms import CdRoms
from nbcloud.services.dns import Dns
from nbcloud.services.floating import FloatingAddresses
from nbcloud.services.folders import Folders
from nbcloud.services.hosts import Hosts
from nbcloud.services.instances import Instances
from nbcloud.services.keys import Keys
from nbcloud.services.loadbalancers import LoadBalancers
from nbcloud.services.monitor import Monitor
from nbcloud.services.networks import Networks
from nbcloud.services.projects import Projects
from nbcloud.services.secgroups import SecurityGroups
from nbcloud.services.storage_pools import Pools
from nbcloud.services.volumes import Volumes


class Services:
    """`hosts`, `instances`, `volumes`, `cdroms`, `pools`, `networks`, `keys`, `secgroups`,
    `floating`, `sync`, `lbs`, `dns`, `projects`, and `monitor` (made on first use: a
    thread)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.volumes = Volumes(ctx)
        self.cdroms = CdRoms(ctx, self.volumes)
        self.pools = Pools(ctx)
        self.networks = Networks(ctx)
        self.keys = Keys(ctx)
        self.sync = Folders(ctx)
        self.hosts = Hosts(ctx)
        self.instances = Instances(ctx, self.volumes, self.sync, self.hosts)
        self.secgroups = SecurityGroups(ctx)
        self.floating = FloatingAddresses(ctx)
        self.lbs = LoadBalancers(ctx)
        self.dns = Dns(ctx)
        self.projects = Projects(ctx)
        self._monitor: Monitor | None = None

    @property
    def provider(self):
        return self.ctx.provider

    @property
    def inventory(self):
        """This cloud's view of the inventory."""
        return self.ctx.inventory

    @property
    def uri(self) -> str:
        return self.ctx.uri

    @property
    def images(self):
        """The provider's image store."""
        return self.ctx.provider.images

    @property
    def monitor(self) -> Monitor:
        """The sampler: one thread, one bulk stats call per tick (started on first watch)."""
        if self._monitor is None:
            self._monitor = Monitor(self.ctx)
        return self._monitor

    @property
    def started_monitor(self) -> Monitor | None:
        """The monitor if it was made (None: nothing samples yet)."""
        return self._monitor

    def close(self) -> None:
        if self._monitor is not None:   # stop sampling before the connection goes
            self._monitor.close()
            self._monitor = None
        self.dns.stop_checker()
        self.instances.close()
