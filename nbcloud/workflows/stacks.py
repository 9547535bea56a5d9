"""`cloud.stacks`: plan, apply and destroy the stack a `%%cloud` cell declares; list,
show and drift.

Apply runs a plan in two phases, so that names and addresses are free before they are
taken again: first everything that goes away (instance pools, balancers, instances, then
volumes, then networks), then everything that comes or changes (networks, then volumes,
then instances, security groups, balancers and last the pools, which name them).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import yaml

from nbcloud.core.display import Table
from nbcloud.core.errors import CloudError
from nbcloud.core.spec import check_name, format_size
from nbcloud.core.stackfile import Stack, parse
from nbcloud.plan.compare import (
    Action,
    LiveState,
    Plan,
    compute,
    drift,
    nic_pairs,
    user_data_digest,
)
from nbcloud.plan.ipool import pool_members
from nbcloud.plan.runtime import INACTIVE, MOVE, PLACEMENT, STOPPED
from nbcloud.services import keys

if TYPE_CHECKING:
    from nbcloud.services.catalog import Services
    from nbcloud.workflows.instance_pools import InstancePools

MAX_PARALLEL_CREATES = 3


def read_live(cloud: Services) -> LiveState:
    """What the provider has (every domain, network and volume, one bulk listing per
    kind), what runs on the host beside it (balancer processes, forwarding rules, what
    each network's DNS answers), and what the inventory records of the kinds that have
    no engine object."""
    provider, inv = cloud.provider, cloud.inventory
    domains, foreign = provider.domains_live()
    infos = provider.network_infos()
    networks = {i.name: {"cidr": str(i.network), "mode": i.mode,
                         "managed": provider.network_managed(i),
                         "active": provider.network_active(i.name)} for i in infos}
    # a cloud that counts in whole GiB made a 128M volume 1G: that is no change
    volumes = {name: {"tier": v.tier, "size": v.capacity, "pool": v.pool,
                      "granularity": provider.volume_granularity}
               for name, v in cloud.volumes.all().items() if v.kind == "disk" and v.tier}
    lbs = {r.name: r.spec for r in inv.all("loadbalancer")}
    sgs = {r.name: r.spec for r in inv.all("secgroup")}
    pools = {r.name: r.spec for r in inv.all("ipool")}
    forwards = None
    if inv.all("floating"):
        try:
            forwards = set(provider.live_forwards())
        except CloudError:
            pass   # no nft here: the forwards' state is unknown, not missing
    return LiveState(domains, foreign, networks, volumes, loadbalancers=lbs, secgroups=sgs,
                     ipools=pools, lost=cloud.hosts.lost(),
                     balancers_running={n: provider.balancer_running(n) for n in lbs},
                     forwards=forwards,
                     dns={i.name: {n: ip for ip, names in i.dns_hosts for n in names}
                          for i in infos})


#: spec fields holding a byte count, shown in the units a stack file uses (128M)
SIZE_FIELDS = ("size", "memory")


def spec_text(spec: dict) -> str:
    """A recorded spec as `stack show` prints it: empty fields left out, sizes as 128M,
    lists as a,b; never the pinned host key."""
    def text(key, value):
        if key in SIZE_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            return format_size(value)
        if isinstance(value, (list, tuple)):
            return ",".join(map(str, value))
        return str(value)
    return ", ".join(f"{k}={text(k, v)}" for k, v in sorted(spec.items())
                     if k != "hostkey" and v not in (None, "", [], (), {}))


class Stacks:
    """`cloud.stacks`: the declarative side of the cloud."""

    def __init__(self, cloud: Services, pools: InstancePools):
        self.cloud = cloud
        self.pools = pools

    # ----- read-only ----------------------------------------------------------------------
    def _recorded(self):
        return self.cloud.inventory.all()

    def plan(self, name: str, source: str | dict, namespace: dict | None = None) -> Plan:
        """What `apply` would do, without doing it."""
        return compute(parse(source, namespace, name,
                             default_network=self.cloud.provider.default_network),
                       self._recorded(),
                       read_live(self.cloud))

    def drift(self) -> Table:
        """Inventory vs libvirt: deleted or changed behind nbcloud's back, and objects
        nbcloud did not make (listed, never touched)."""
        rows = drift(self._recorded(), read_live(self.cloud))
        return Table(["kind", "name", "stack", "drift"], rows, "drift")

    def list(self) -> Table:
        counts: dict[str, int] = {}
        for r in self._recorded():
            counts[r.stack] = counts.get(r.stack, 0) + 1
        names = sorted(set(counts) | {s["name"] for s in self.cloud.inventory.stacks()})
        return Table(["stack", "resources"], [(n, counts.get(n, 0)) for n in names], "stacks")

    def show(self, name: str) -> Table:
        check_name(name, "stack name")
        rows = [(r.kind, r.name, r.state, spec_text(r.spec)) for r in self._recorded()
                if r.stack == name]
        return Table(["kind", "name", "state", "spec"], rows, f"stack {name}")

    # ----- writes -------------------------------------------------------------------------
    def apply(self, name: str, source: str | dict, namespace: dict | None = None,
              show=None) -> Plan:
        """Converge stack `name` to `source` (YAML text or the dict it loads to).

        `show(plan)` is called with the plan before anything changes."""
        stack = parse(source, namespace, name, default_network=self.cloud.provider.default_network)
        plan = compute(stack, self._recorded(), read_live(self.cloud))
        for a in plan.actions:  # before anything is made: a pool's image is read late
            if a.kind == "ipool" and a.op == "create":
                self.cloud.images.get(a.desired.image)
        if plan and show is not None:
            show(plan)
        self._execute(plan, stack)
        self._claim_recovered(stack)
        text = source if isinstance(source, str) else yaml.safe_dump(source)
        self.cloud.inventory.put_stack(name, text)
        plan.applied = True
        return plan

    def destroy(self, name: str, show=None) -> Plan:
        """Delete everything stack `name` made (instances, then volumes, then networks)."""
        stack = Stack(check_name(name, "stack name"))
        plan = compute(stack, self._recorded(), read_live(self.cloud))
        if plan and show is not None:
            show(plan)
        self._execute(plan, stack)
        self.cloud.inventory.remove_stack(name)
        plan.applied = True
        return plan

    def _execute(self, plan: Plan, stack: Stack) -> None:
        by = {op: [a for a in plan.actions if a.op == op] for op in
              ("create", "update", "replace", "delete")}
        going = by["delete"] + by["replace"]
        # phase 1: what goes away, pools (which name balancers and groups), balancers
        # (which name instances) and instances first
        for a in (a for a in going if a.kind == "ipool"):
            if a.live:
                self.pools.delete(a.name)
            else:
                self.cloud.inventory.remove(a.kind, a.name)
        for a in (a for a in going if a.kind == "loadbalancer"):
            if a.live:
                self.cloud.lbs.delete(a.name)
            else:
                self.cloud.inventory.remove(a.kind, a.name)
        for a in (a for a in going if a.kind == "instance"):
            self._delete_instance(a.name, alive=a.live)
        for a in (a for a in going if a.kind == "secgroup"):
            if a.name in {g.name for g in self.cloud.secgroups.list()}:
                self.cloud.secgroups.delete_with_members(a.name)
        for a in by["update"]:
            if a.kind == "instance":
                self._detach_extra(a.name, set(a.desired[1].volumes))
        for kind in ("volume", "network"):
            for a in (a for a in going if a.kind == kind):
                self._delete(kind, a.name, alive=a.live)
        # phase 2: what comes or changes, networks first
        for kind in ("network", "volume"):
            for a in plan.actions:
                if a.kind != kind or a.op == "delete":
                    continue
                if a.op in ("create", "replace"):
                    self._create(kind, a.desired, stack.name)
                elif kind == "volume":
                    self.cloud.volumes.resize(a.name, a.desired.capacity)
                elif INACTIVE in a.changes:
                    self.cloud.networks.start(a.name)
        new = [a for a in by["create"] + by["replace"] if a.kind == "instance"]
        if new:
            # made once here: keys.user_key races with itself when first called from
            # several threads at once (one sees the private file, not yet the public one)
            keys.user_key("default")
            with ThreadPoolExecutor(max_workers=min(len(new), MAX_PARALLEL_CREATES)) as pool:
                for future in [pool.submit(self._create_instance, a, stack.name) for a in new]:
                    future.result()
        for a in by["update"]:
            if a.kind == "instance":
                self._update_instance(a, stack.name)
        self._converge_secgroups(stack)
        self._converge_lbs(plan, stack)
        self._converge_pools(plan, stack)
        # the stack's port forwards whose rules a host restart dropped
        self.cloud.floating.restore({r.name for r in self.cloud.inventory.all("floating")
                                     if r.stack == stack.name})

    # ----- steps --------------------------------------------------------------------------
    def _converge_secgroups(self, stack: Stack) -> None:
        """The stack's security groups: all made first (a rule may name another), then
        each one's rules and its members among the stack's instances (after they run)."""
        from nbcloud.core.secrules import parse_rule_text
        from nbcloud.plan.compare import sg_members
        groups = self.cloud.secgroups
        have = {g.name for g in groups.list()}
        for name in stack.secgroups:
            if name not in have:
                groups.create(name, stack=stack.name)
        ours = set(stack.members())
        for name, decl in stack.secgroups.items():
            groups.converge(name, [parse_rule_text(r) for r in decl.rules],
                            sg_members(stack, name), ours, stack.name)

    def _converge_lbs(self, plan: Plan, stack: Stack) -> None:
        """Create or update the stack's balancers (after its instances are up), and
        regenerate the others' configuration: a replaced member has a new address."""
        lbs = self.cloud.lbs
        for a in plan.actions:
            if a.kind != "loadbalancer" or a.op == "delete":
                continue
            d = a.desired
            if a.op in ("create", "replace"):
                lbs.create(d.name, d.network, d.port, d.members, d.algorithm,
                           member_port=d.member_port, stack=stack.name)
            else:  # the members its pools added stay
                pools = {p.name: p.spec for p in self.pools.records()}
                lbs.update(d.name, d.members + tuple(pool_members(pools, d.name)),
                           d.algorithm, d.member_port)
        for name in stack.loadbalancers:
            lbs.ensure(name)

    def _converge_pools(self, plan: Plan, stack: Stack) -> None:
        """Create the stack's new pools (after the groups and balancers they name), give
        changed ones their autoscale rule, then their size."""
        pools = self.pools
        for a in (a for a in plan.actions if a.kind == "ipool" and a.op != "delete"):
            d = a.desired
            if a.op == "create":
                policy = d.policy or {}
                pools.create(d.name, d.image, d.flavor, d.network, d.size,
                             user_data=d.user_data, secgroups=d.secgroups, lb=d.lb,
                             scale_out=policy.get("scale_out"),
                             scale_in=policy.get("scale_in"), min_size=policy.get("min"),
                             max_size=policy.get("max"), stack=stack.name)
                continue
            if any(c.endswith(STOPPED) for c in a.changes):   # members a restart stopped
                for member in pools.record(d.name).spec["members"]:
                    inst = self.cloud.instances.get(member)
                    if inst.state != "running":
                        inst.start()
            if any(c.startswith("autoscale ") for c in a.changes):
                pools.set_policy(d.name, d.policy, stack=stack.name)
            if d.policy is None and pools.get(d.name).size != d.size:
                pools.scale(d.name, d.size, reason=f"stack {stack.name}")

    def _claim_recovered(self, stack: Stack) -> None:
        """Rows rebuilt from libvirt without a stack (rebuild.py) join the stack that
        declares them."""
        declared = {("network", n) for n in stack.networks} | \
            {("volume", n) for n in stack.volumes}
        for r in self._recorded():
            if r.spec.get("recovered") and (r.kind, r.name) in declared:
                spec = {k: v for k, v in r.spec.items() if k != "recovered"}
                self.cloud.inventory.put(r.kind, r.name, state=r.state, spec=spec,
                                         stack=stack.name)

    def _create(self, kind: str, spec, stack: str) -> None:
        if kind == "network":
            self.cloud.networks.create(spec.name, spec.cidr, spec.mode, stack=stack)
        else:
            self.cloud.volumes.create(spec.name, spec.size, spec.tier, stack=stack)

    def _delete(self, kind: str, name: str, alive: bool) -> None:
        if not alive:
            self.cloud.inventory.remove(kind, name)
            return
        if kind == "network":
            self.cloud.networks.delete(name)
            return
        vol = self.cloud.volumes.get(name)
        if vol.attachments:
            self.cloud.volumes.detach(name)
        self.cloud.volumes.delete(name)

    def _delete_instance(self, name: str, alive: bool) -> None:
        if alive and self.cloud.provider.exists(name):
            self.cloud.instances.delete(name)
        else:
            self._forget_vanished(name)

    def _forget_vanished(self, name: str) -> None:
        """An instance deleted behind our back leaves its disks, address reservations and
        inventory row: remove them so that the name can be used again."""
        cloud, provider = self.cloud, self.cloud.provider
        if cloud.hosts.is_lost(name):   # its host is down: it goes from there when back
            with cloud.inventory.operation("forget", "instance", name, lost=True) as op:
                op.detail = "; ".join(cloud.hosts.forget_lost(name))
            return
        with cloud.inventory.operation("forget", "instance", name):
            provider.remove_instance_files(name)
            for info in provider.network_infos():
                for mac, _ip, host in info.hosts:
                    if host == name:
                        provider.release_address(info.name, mac)
            for r in cloud.inventory.all("volume"):
                if r.spec.get("attached_to") == name:
                    cloud.volumes.record(r.name, "available", attached_to="", target="")
            cloud.inventory.remove("instance", name)

    def _record_instance(self, name: str, spec, decl, stack: str) -> None:
        """The stack's record of instance `name` (a recovered one joins the stack),
        keeping where placement put it (its host and group: without them a host's death
        would not show it lost)."""
        want = {"image": spec.image, "flavor": spec.flavor, "networks": list(spec.networks),
                "volumes": list(decl.volumes), "user_data": user_data_digest(spec.user_data)}
        self.cloud.inventory.update("instance", name, lambda r: {
            **{k: v for k, v in (r.spec if r else {}).items() if k in PLACEMENT}, **want},
            state="running", stack=stack, claim=True)

    def _create_instance(self, a: Action, stack: str) -> None:
        spec, decl = a.desired
        if any(r.kind == "instance" and r.name == a.name for r in self._recorded()):
            self._forget_vanished(a.name)  # recorded, but gone from libvirt
        self.cloud.instances.create(a.name, spec.image, spec.flavor, spec.networks,
                                    user_data=spec.user_data, stack=stack, host=spec.host,
                                    group=decl.name if decl.count else None)
        for vol in decl.volumes:
            self.cloud.volumes.attach(vol, a.name)
        self._record_instance(a.name, spec, decl, stack)

    def _detach_extra(self, name: str, keep: set[str]) -> None:
        meta = self.cloud.provider.metadata(name)
        for vol in filter(None, meta.get("volumes", "").split(",")):
            if vol not in keep:
                self.cloud.volumes.detach(vol, name)

    def _update_instance(self, a: Action, stack: str) -> None:
        spec, decl = a.desired
        inst = self.cloud.instances.get(a.name)
        if STOPPED in a.changes:
            inst.start()
        if any(c.startswith(MOVE) for c in a.changes):
            self.cloud.hosts.migrate(a.name, to=spec.host)
        if inst.flavor != spec.flavor:
            inst.resize(spec.flavor)
        elif any(c.startswith("changed behind nbcloud's back") for c in a.changes):
            self._restore_size(a.name, spec.flavor)
        if any(c.startswith("NICs changed behind") for c in a.changes):
            self._restore_nics(a.name)
        have = set(filter(None, inst.meta.get("volumes", "").split(",")))
        for vol in decl.volumes:
            if vol not in have:
                self.cloud.volumes.attach(vol, a.name)
        self._record_instance(a.name, spec, decl, stack)

    def _restore_nics(self, name: str) -> None:
        """Unplug the NICs added or moved behind our back, plug back the ones removed or
        moved, each with the MAC (so the address reservation) nbcloud gave it."""
        provider = self.cloud.provider

        def revert() -> str:
            want = nic_pairs(provider.metadata(name))
            have = set(provider.domain_facts(name)["nics"])
            for _net, mac in sorted(have - want):
                provider.detach_nic(name, mac)
            for net, mac in sorted(want - have):
                provider.attach_nic(name, net, mac)
            return (f"NICs restored: unplugged {len(have - want)}, plugged "
                    f"{len(want - have)}")
        self.cloud.instances.logged("restore-nics", name, revert)

    def _restore_size(self, name: str, flavor_name: str) -> None:
        """Give a domain resized behind our back its flavor's vCPUs and memory again."""
        flavor = self.cloud.provider.flavor(flavor_name)
        inst = self.cloud.instances.get(name)
        running = inst.state == "running"

        def redefine() -> str:
            if running:
                inst.stop()
            self.cloud.provider.resize(name, flavor)
            if running:
                inst.start()
            return f"restored {flavor.name}"
        self.cloud.instances.logged("resize", name, redefine)
