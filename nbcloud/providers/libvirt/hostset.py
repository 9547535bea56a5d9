"""The hosts of a LibvirtCloud: adding and removing them, what each one is (its URI,
shell, tunnel address, capacity), and what becomes of instances lost with one."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import libvirt

from nbcloud.core.errors import CloudError, HostError, InvalidSpec
from nbcloud.core.spec import check_name
from nbcloud.providers.libvirt import accel
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.local import is_local
from nbcloud.providers.libvirt.overlay import HostShell, resolve, source_address
from nbcloud.providers.types import USER_NETWORK, HostInfo


class HostSetMixin:
    """The HostGroup calls of a `LibvirtCloud` (providers/base.py) but migration."""

    # ----- adding and removing hosts ---------------------------------------------------------
    def add_host(self, name: str, uri: str, address: str | None = None,
                 known: bool = False) -> HostInfo:
        """Connect host `name` at `uri` (its pools made); the cloud's own URI names the
        home host. Refused if the name or the daemon's host UUID is taken already. A
        `known` host (recorded earlier) that does not answer is kept, down."""
        check_name(name, "host name")
        if uri == self.uri:
            if name != self.home_host and name in self.peers:
                raise InvalidSpec(f"host name {name!r} is taken by another host")
            with self._hosts_lock:
                old, self.home_host = self.home_host, name
                for inst, host in list(self._where.items()):
                    if host == old:
                        self._where[inst] = name
            self._remember_address(name, address)
            return self._info(name)
        if name == self.home_host or name in self.peers:
            if self._uris.get(name) == uri:     # again: the same host (a new address)
                self._remember_address(name, address)
                return self._info(name)
            raise InvalidSpec(f"host name {name!r} is taken already (`%cloud host list`)")
        if uri in self._uris.values():
            raise InvalidSpec(f"{uri} is host "
                              f"{next(h for h, u in self._uris.items() if u == uri)} already")
        try:
            peer = self._connect(name, uri)
        except HostError as exc:
            if not known:
                raise
            with self._hosts_lock:     # recorded, not answering: down, tried again later
                self.peers[name] = None
                self._uris[name] = uri
                self._mark_down(name, str(exc))
            self._remember_address(name, address)
            return self._info(name)
        try:
            mine = _host_uuid(peer.conn)
            for other in self._up_hosts():
                if mine and _host_uuid(self._host(other).conn) == mine:
                    raise HostError(f"{uri} has the host UUID of host {other} ({mine}): "
                                    "it is the same daemon, or a copy of its configuration;"
                                    " libvirt migrates only between hosts of different "
                                    "UUIDs (set host_uuid in its libvirtd.conf)")
            peer.prepare()
        except BaseException:
            peer.close()
            raise
        with self._hosts_lock:
            self.peers[name] = peer
            self._uris[name] = uri
        self._remember_address(name, address)
        return self._info(name)

    def _remember_address(self, host: str, address: str | None) -> None:
        if address:
            self._addresses[host] = resolve(address)

    def remove_host(self, name: str) -> None:
        """Forget host `name` (not the home host); its networks' other hosts stop
        flooding to it. The caller checks that it holds no instance."""
        if name == self.home_host:
            raise InvalidSpec(f"host {name} is the home host: its URI is the cloud's own "
                              "(connect to another URI to make another host the home)")
        self._host(name)
        if name not in self._down:
            self.leave_all(name)
        with self._hosts_lock:
            peer = self.peers.pop(name)
            self._uris.pop(name, None)
            self._addresses.pop(name, None)
            self._down.pop(name, None)
            for inst in [i for i, h in self._where.items() if h == name]:
                del self._where[inst]
        self.rejoin_all()
        if peer is not None:
            peer.close()

    # ----- what a host is --------------------------------------------------------------------
    def host_uri(self, host: str) -> str:
        return self.uri if host == self.home_host else self._uris[host]

    def shell(self, host: str) -> HostShell:
        uri = self.host_uri(host)
        return HostShell(host, uri, is_local(uri) and uri.startswith("qemu:///system"))

    def address(self, host: str) -> str:
        """Where the other hosts reach `host`: given with --address, else the URI's host
        name resolved, else (a local home host) its source address towards a peer."""
        if host in self._addresses:
            return self._addresses[host]
        hostname = urlsplit(self.host_uri(host)).hostname
        if hostname and hostname not in ("localhost",):
            found = resolve(hostname)
        else:
            peer = next((p for p in self.peers if p != host), None)
            if peer is None:
                raise CloudError(f"host {host} needs an address the other hosts reach it "
                                 "at: add it again with --address")
            found = source_address(self.shell(host), self.address(peer))
        self._addresses[host] = found
        return found

    def host_infos(self) -> list[HostInfo]:
        self._retry_down()
        return [self._info(h) for h in self.host_names()]

    def _info(self, host: str) -> HostInfo:
        uri = self.host_uri(host)
        if host in self._down:
            return HostInfo(host, uri, "down", reason=self._down[host][0],
                            address=self._addresses.get(host, ""))
        try:
            conn = self._host(host).conn
            _model, memory, cpus, *_ = conn.getInfo()
            used_vcpus = used_memory = 0
            ours = []
            for dom in conn.listAllDomains(0):
                _state, maxmem, _mem, vcpus, _cpu = dom.info()
                used_vcpus, used_memory = used_vcpus + vcpus, used_memory + maxmem * 1024
                try:
                    dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, lx.NS, 0)
                    ours.append(dom.name())
                except libvirt.libvirtError:
                    continue
            target = self._host(host)   # what a probe found (never a probe boot here)
            found = getattr(target, "_accel", None) or accel.cached(target) or {}
            accelerator = found.get("accelerator", "not probed")
        except libvirt.libvirtError as exc:
            if host == self.home_host:
                raise HostError(f"the home host {host} stopped answering: {exc}") from None
            self._mark_down(host, str(exc))
            return self._info(host)
        return HostInfo(host, uri, "up", cpus, memory << 20, used_vcpus, used_memory,
                        tuple(sorted(ours)), accelerator, self._addresses.get(host, ""),
                        home=host == self.home_host)

    # ----- lost instances -------------------------------------------------------------------
    def forget_lost(self, name: str, networks: tuple[str, ...]) -> list[str]:
        """Let go of instance `name`, lost with its host: its address reservations and
        DNS records go (a replacement takes the name); its host is forgotten."""
        done = []
        for net in networks:
            if net == USER_NETWORK:
                continue
            try:
                found = self.host_reservations(net, name)
            except CloudError:
                continue
            for r, _live in found:
                if self.release_address(net, r.mac):
                    done.append(f"released {r.ip} on {net}")
        with self._hosts_lock:
            self._where.pop(name, None)
        return done

    def fence(self, name: str, host: str) -> list[str]:
        """Remove the stale copy of instance `name` that `host` kept while it was down
        (the instance was made again elsewhere): its domain and its disks there."""
        target = self._host(host)
        try:
            dom = target.conn.lookupByName(name)
        except libvirt.libvirtError:
            return []
        target._metadata(dom)     # NotManaged: never touch a domain without our mark
        done = []
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        done.append(f"stale domain {name} on {host}")
        done += [f"{v} on {host}" for v in target.remove_instance_files(name)]
        if self._where.get(name) == host:
            with self._hosts_lock:
                self._where.pop(name, None)
        return done


def _host_uuid(conn) -> str:
    return ET.fromstring(conn.getCapabilities()).findtext("host/uuid", "")
