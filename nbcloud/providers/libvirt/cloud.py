"""LibvirtCloud: several libvirt hosts as one cloud.

The cloud is opened on one URI, its *home* host, and is that host's `LibvirtProvider`:
with no other host, every call is the home host's own, unchanged. `add_host` adds a
`LibvirtProvider` per other host; from then on each call goes where its object is:

- an instance's calls to the host that holds its domain (remembered when it is made,
  moved or listed; looked for on every host otherwise);
- a network's DHCP, DNS and address reservations to its *authority*, the host it was made
  on (spanning.py joins the other hosts' bridges to it);
- listings (domains, states, stats, networks, volumes) to every host that answers, merged;
- security groups' filters to every host (a guest may land anywhere);
- pools, images, flavors, balancers and forwards stay the home host's.

A host whose daemon stops answering is *down*: calls for what lives there raise
`HostDown`, listings leave it out, and it is tried again every few seconds.
"""
from __future__ import annotations

import dataclasses
import threading
import time

import libvirt

from nbcloud.core.errors import CloudError, HostDown, HostError, NotFound
from nbcloud.core.spec import check_name
from nbcloud.providers.libvirt.firewall import group_filter
from nbcloud.providers.libvirt.hostset import HostSetMixin
from nbcloud.providers.libvirt.migration import MigrationMixin, copy_filter
from nbcloud.providers.libvirt.provider import LibvirtProvider
from nbcloud.providers.libvirt.spanning import SpanMixin
from nbcloud.providers.libvirt.transfer import ensure_image
from nbcloud.providers.types import USER_NETWORK

HOME = "home"              # the home host's name until the user names it
RETRY_SECONDS = 5.0        # how often a down host is tried again
_BASE = LibvirtProvider


def _by_instance(method: str):
    """A call whose first argument is an instance name: made on that instance's host."""
    def call(self, name, *args, **kwargs):
        if not self.peers:
            return getattr(_BASE, method)(self, name, *args, **kwargs)
        return self._on_instance(name, method, *args, **kwargs)
    call.__name__ = method
    call.__doc__ = getattr(_BASE, method).__doc__
    return call


def _everywhere(method: str):
    """A change every host must have (a security group's filter)."""
    def call(self, *args, **kwargs):
        result = getattr(_BASE, method)(self, *args, **kwargs)
        for host in self._up_peers():
            self._call(host, method, *args, **kwargs)
        return result
    call.__name__ = method
    call.__doc__ = getattr(_BASE, method).__doc__
    return call


def _by_network(method: str):
    """A call about a network's DHCP, DNS or reservations: made on its authority."""
    def call(self, network, *args, **kwargs):
        if not self.peers:
            return getattr(_BASE, method)(self, network, *args, **kwargs)
        return self._call(self.authority(network), method, network, *args, **kwargs)
    call.__name__ = method
    call.__doc__ = getattr(_BASE, method).__doc__
    return call


class LibvirtCloud(HostSetMixin, MigrationMixin, SpanMixin, LibvirtProvider):
    """The home host's provider, plus one `LibvirtProvider` per other host."""

    capabilities = LibvirtProvider.capabilities | {"hosts", "migrate"}

    def __init__(self, uri: str):
        super().__init__(uri)
        self.home_host = HOME
        self.peers: dict[str, LibvirtProvider | None] = {}   # None: never answered
        self._uris: dict[str, str] = {}
        self._addresses: dict[str, str] = {}     # host -> its tunnel address
        self._where: dict[str, str] = {}         # instance -> host
        self._down: dict[str, tuple[str, float]] = {}   # host -> (why, when to retry)
        self._hosts_lock = threading.RLock()

    # ----- the hosts ------------------------------------------------------------------------
    def _host(self, host: str) -> LibvirtProvider:
        """The provider of `host` (the home host is this object itself)."""
        if host == self.home_host:
            return self
        try:
            return self.peers[host]
        except KeyError:
            raise NotFound(f"host {host!r} is not a host of this cloud (hosts: "
                           f"{', '.join(self.host_names())}; `%cloud host list`)") from None

    def host_names(self) -> list[str]:
        return [self.home_host, *self.peers]

    def _up_peers(self) -> list[str]:
        self._retry_down()
        return [h for h in self.peers if h not in self._down]

    def _up_hosts(self) -> list[str]:
        return [self.home_host, *self._up_peers()]

    def _mark_down(self, host: str, why: str) -> None:
        with self._hosts_lock:
            self._down[host] = (why, time.monotonic() + RETRY_SECONDS)

    def _retry_down(self) -> None:
        """Try the down hosts whose retry time has come; one that answers is up again."""
        now = time.monotonic()
        for host, (why, retry_at) in list(self._down.items()):
            if now < retry_at:
                continue
            try:
                fresh = self._connect(host, self._uris[host])
            except HostError as exc:
                self._mark_down(host, str(exc))
                continue
            with self._hosts_lock:
                old = self.peers.get(host)
                self.peers[host] = fresh
                self._down.pop(host, None)
            if old is not None:
                try:
                    old.close()
                except Exception:  # noqa: BLE001  (a dead connection's close may fail)
                    pass

    def _connect(self, host: str, uri: str) -> LibvirtProvider:
        peer = LibvirtProvider(uri)
        peer.net_authority = self   # its instances' addresses come from the authority
        return peer

    def _call(self, host: str, method: str, *args, **kwargs):
        """`method` on `host`: the base implementation for the home host, the peer's
        otherwise; a peer whose daemon stopped answering is marked down (HostDown)."""
        if host == self.home_host:
            return getattr(_BASE, method)(self, *args, **kwargs)
        peer = self._host(host)
        if host in self._down:
            raise HostDown(f"host {host} does not answer ({self._down[host][0]})")
        try:
            return getattr(peer, method)(*args, **kwargs)
        except (libvirt.libvirtError, CloudError) as exc:
            try:
                alive = peer.conn.isAlive()
            except libvirt.libvirtError:
                alive = False
            if alive:
                raise
            self._mark_down(host, str(exc))
            raise HostDown(f"host {host} stopped answering: {exc}") from None

    def _collect(self, method: str, *args):
        """(host, result) of `method` on every host that answers, home first."""
        out = []
        for host in self._up_hosts():
            try:
                out.append((host, self._call(host, method, *args)))
            except HostDown:
                continue
        return out

    # ----- where an instance is ---------------------------------------------------------------
    def _find(self, name: str) -> str | None:
        for host in self._up_hosts():
            try:
                if self._call(host, "exists", name):
                    with self._hosts_lock:
                        self._where[name] = host
                    return host
            except HostDown:
                continue
        return None

    def host_of(self, name: str) -> str:
        """The host that holds instance `name` ('' if none does)."""
        if not self.peers:
            return self.home_host if _BASE.exists(self, name) else ""
        return self._where.get(name) or self._find(name) or ""

    def know_placements(self, placements: dict[str, str]) -> None:
        """Where instances were recorded (the inventory): a lost one's host is known."""
        with self._hosts_lock:
            for name, host in placements.items():
                if host in self.host_names():
                    self._where.setdefault(name, host)

    def _on_instance(self, name: str, method: str, *args, **kwargs):
        host = self._where.get(name) or self._find(name) or self.home_host
        try:
            return self._call(host, method, name, *args, **kwargs)
        except NotFound:
            found = self._find(name)   # moved by another process, or gone
            if found is None or found == host:
                raise
            return self._call(found, method, name, *args, **kwargs)

    def exists(self, name: str) -> bool:
        if not self.peers:
            return _BASE.exists(self, name)
        if self._where.get(name) in self._down:
            return True          # lost with its host, not gone
        return self._find(name) is not None


    def provision(self, req, image, undo):
        host = req.host or self.home_host
        if host != self.home_host or self.peers:
            target = self._host(host)
            if host in self._down:
                raise HostDown(f"host {host} does not answer ({self._down[host][0]})")
            for net in req.networks:   # first: a host it cannot span to is refused here
                if net != USER_NETWORK:
                    self.span(net, host)
            if host != self.home_host:
                ensure_image(self, target, image.name)
                image = target.images.get(image.name)
            made = target.provision(req, image, undo) if target is not self else \
                _BASE.provision(self, req, image, undo)
        else:
            made = _BASE.provision(self, req, image, undo)
        with self._hosts_lock:
            self._where[req.name] = host
        undo.add(lambda: self._where.pop(req.name, None))
        return dataclasses.replace(made, host=host)

    def _clone_obstacle(self, image, flavor, networks, screen, shares) -> str:
        if self.peers:
            return ("a cloud of several hosts boots cold: a warm clone's memory and disk "
                    "hang on its host's base, which live migration does not move")
        return _BASE._clone_obstacle(self, image, flavor, networks, screen, shares)

    def apply_instance_groups(self, instance: str, groups: list[str],
                              egress_limited: bool, owner: str) -> None:
        if not self.peers:
            return _BASE.apply_instance_groups(self, instance, groups, egress_limited, owner)
        host = self.host_of(instance) or self.home_host
        if host != self.home_host:   # its groups' filters, which a later host lacks
            for group in groups:
                xml = self.conn.nwfilterLookupByName(group_filter(owner, group)).XMLDesc(0)
                copy_filter(self._host(host), xml)
        return self._call(host, "apply_instance_groups", instance, groups, egress_limited,
                          owner)

    def publish(self, reservation):
        if not self.peers:
            return _BASE.publish(self, reservation)
        return self._call(self.authority(reservation.network), "publish", reservation)

    # ----- listings, merged ----------------------------------------------------------------
    def managed(self) -> dict[str, dict[str, str]]:
        if not self.peers:
            return _BASE.managed(self)
        out: dict[str, dict[str, str]] = {}
        for host, found in self._collect("managed"):
            for name, meta in found.items():
                if self._where.setdefault(name, host) == host:
                    out.setdefault(name, meta)
        return out

    def domain_states(self) -> dict[str, str]:
        if not self.peers:
            return _BASE.domain_states(self)
        out: dict[str, str] = {}
        for _host, found in self._collect("domain_states"):
            for name, state in found.items():
                out.setdefault(name, state)
        return out

    def domains_live(self) -> tuple[dict[str, dict], list[str]]:
        """As a host's, merged; each of nbcloud's entries also says its `host`."""
        if not self.peers:
            return _BASE.domains_live(self)
        ours: dict[str, dict] = {}
        others: list[str] = []
        for host, (found, foreign) in self._collect("domains_live"):
            for name, entry in found.items():
                if name not in ours and self._where.setdefault(name, host) == host:
                    ours[name] = {**entry, "host": host}
            others += [n for n in foreign if n not in others]
        return ours, sorted(others)

    def domain_stats(self, names: list[str]) -> dict[str, dict]:
        if not self.peers:
            return _BASE.domain_stats(self, names)
        by_host: dict[str, list[str]] = {}
        for name in names:
            host = self._where.get(name) or self._find(name)
            if host and host not in self._down:
                by_host.setdefault(host, []).append(name)
        out: dict[str, dict] = {}
        for host, group in by_host.items():
            try:
                out.update(self._call(host, "domain_stats", group))
            except HostDown:
                continue
        return out

    def network_infos(self):
        if not self.peers:
            return _BASE.network_infos(self)
        seen: dict = {}
        for _host, infos in self._collect("network_infos"):
            for info in infos:
                seen.setdefault(info.name, info)
        return sorted(seen.values(), key=lambda info: info.name)

    def network_names(self) -> list[str]:
        if not self.peers:
            return _BASE.network_names(self)
        return sorted({n for _h, names in self._collect("network_names") for n in names})

    def network_bridges(self) -> set[str]:
        if not self.peers:
            return _BASE.network_bridges(self)
        return {b for _h, found in self._collect("network_bridges") for b in found}

    def data_volumes(self):
        if not self.peers:
            return _BASE.data_volumes(self)
        out = {}
        for host, found in self._collect("data_volumes"):
            for name, vol in found.items():
                out.setdefault(name, dataclasses.replace(vol, host=host))
        return out

    def data_volume(self, name: str):
        if not self.peers:
            return _BASE.data_volume(self, name)
        check_name(name, "volume name")
        vol = self.data_volumes().get(name)
        if vol is None:
            raise NotFound(f"volume {name!r} does not exist (see `%cloud volume list`)")
        return vol

    def _volume_host(self, vol) -> str:
        return vol.host or self.home_host

    def delete_data_volume(self, vol) -> None:
        return self._call(self._volume_host(vol), "delete_data_volume", vol)

    def volume_users(self, vol):
        return self._call(self._volume_host(vol), "volume_users", vol)

    def grow_volume(self, vol, capacity: int) -> bool:
        return self._call(self._volume_host(vol), "grow_volume", vol, capacity)

    def attach_volume(self, vol, instance: str, bus: str = "virtio") -> str:
        if not self.peers:
            return _BASE.attach_volume(self, vol, instance, bus)
        host = self.host_of(instance) or self.home_host
        if host != self._volume_host(vol):
            raise CloudError(f"volume {vol.name} is on host {self._volume_host(vol)}, "
                             f"instance {instance} on {host}: a volume attaches to an "
                             "instance of its own host (storage is not shared)")
        return self._call(host, "attach_volume", vol, instance, bus)

    def close(self) -> None:
        for peer in self.peers.values():
            try:
                if peer is not None:   # None: a recorded host that never answered
                    peer.close()
            except Exception:  # noqa: BLE001  (closing a dead host's connection)
                pass
        self.peers.clear()
        super().close()


#: Calls about one instance, made on its host.
INSTANCE_CALLS = (
    "start", "stop", "reboot", "delete_instance", "state", "uuid", "metadata", "set_metadata",
    "resize", "set_cpu_share", "shared_folders", "snapshot_create", "snapshot_names",
    "snapshot_revert", "snapshot_delete", "console_text", "console_file", "screenshot",
    "delete", "remove_instance_files", "domain_facts", "mark_domain", "attach_nic",
    "detach_nic", "detach_volume", "domain_xml_desc",
    "console_log_path", "interface_filters", "set_interface_filter", "domain_disks",
    "disk_targets", "attach_disk", "detach_disk")
#: Calls about a network's DHCP, DNS and reservations, made on its authority.
NETWORK_CALLS = ("network", "network_active", "leases", "set_dns_names", "reserve_address",
                 "release_address", "host_reservations")
#: Changes every host must have: a security group's filter may be needed anywhere.
EVERYWHERE_CALLS = ("apply_group", "remove_group", "forget_instance_filter")

for _names, _make in ((INSTANCE_CALLS, _by_instance), (NETWORK_CALLS, _by_network),
                      (EVERYWHERE_CALLS, _everywhere)):
    for _name in _names:
        setattr(LibvirtCloud, _name, _make(_name))
