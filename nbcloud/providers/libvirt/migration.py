"""Live migration between the hosts of a LibvirtCloud: libvirt's own, peer to peer.

The source daemon talks to the destination daemon itself (`VIR_MIGRATE_PEER2PEER`), over
the destination's URI as the source host reaches it; QEMU's memory stream and the disk
copy (an NBD server on the destination, fed by a block mirror on the source) go to the
destination's address. Storage is not shared: each writable disk is copied, incrementally
(`VIR_MIGRATE_NON_SHARED_INC`, only the top of each backing chain), onto a volume made
beforehand on the destination: an instance's root disk is a copy-on-write overlay of its
image, so the image is put on the destination first and the overlay made there over it;
the scratch, local and data disks are made empty and filled by the copy. The read-only
seed (which libvirt never copies) is copied before. The instance's networks reach the
destination (spanning.py), and its security groups' filters are defined there, so it
keeps its MACs, addresses, DNS names and rules; port forwards on the home host still
reach its address over the network's VXLAN.

A migration that fails or is aborted (`virDomainAbortJob`, on Ctrl-C) leaves the instance
running where it was, and what was made on the destination is removed.
"""
from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import libvirt

from nbcloud.core.errors import CloudError, HostDown, InvalidSpec, NotFound
from nbcloud.providers.libvirt.local import is_local, is_remote_system
from nbcloud.providers.libvirt.transfer import copy_volume, ensure_image, volume_facts
from nbcloud.providers.libvirt.volumes import IMAGE_POOL, INSTANCE_POOL, TIERS, tier_pool
from nbcloud.providers.types import USER_NETWORK

FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
         | libvirt.VIR_MIGRATE_NON_SHARED_INC | libvirt.VIR_MIGRATE_PERSIST_DEST
         | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_ABORT_ON_ERROR
         | libvirt.VIR_MIGRATE_AUTO_CONVERGE)
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class DiskMove:
    """One disk of a migrating instance: where it is on the source, how it is made on
    the destination."""
    target: str                       # vda, vdb...
    pool: str
    volume: str
    readonly: bool
    fmt: str
    capacity: int
    backing: tuple[str, str] | None   # (path on the source, format)


def _progress_of(stats: dict) -> tuple[str, float | None]:
    """(phase, fraction done or None) from a migration job's statistics."""
    total, done = stats.get("memory_total") or 0, stats.get("memory_processed") or 0
    if total:
        return "memory", min(done / total, 1.0)
    disk_total = stats.get("disk_total") or 0
    if disk_total:
        return "disks", min((stats.get("disk_processed") or 0) / disk_total, 1.0)
    return ("disks" if stats.get("type") else "starting"), None


def copy_filter(dst, xml: str) -> None:
    """Define network filter `xml` (another host's) on host provider `dst`, with the UUID
    `dst` has for that name, or none (each daemon gives a filter a UUID of its own, and
    refuses a name it holds under another)."""
    root = ET.fromstring(xml)
    for el in root.findall("uuid"):
        root.remove(el)
    try:
        uuid = dst.conn.nwfilterLookupByName(root.get("name", "")).UUIDString()
        ET.SubElement(root, "uuid").text = uuid
    except libvirt.libvirtError:
        pass
    try:
        dst.conn.nwfilterDefineXML(ET.tostring(root, encoding="unicode"))
    except libvirt.libvirtError as exc:
        raise CloudError(f"host {dst.uri} refused network filter {root.get('name')}: "
                         f"{exc.get_error_message()}") from None


def _pool_of(provider, path: str) -> str:
    """The storage pool holding `path` on `provider`'s host ('' if none does)."""
    try:
        return provider.conn.storageVolLookupByPath(path).storagePoolLookupByVolume().name()
    except libvirt.libvirtError:
        return ""


class MigrationMixin:
    """`migrate` of a `LibvirtCloud` (providers/base.py, HostGroup)."""

    def migrate(self, name: str, to: str, progress=None, cancelled=None) -> dict:
        """Move running instance `name` to host `to`, live. `progress(phase, fraction)`
        hears the job; `cancelled()` true (or Ctrl-C) aborts it. Returns the completed
        job's figures: seconds, downtime_ms, memory and disk bytes, from, to."""
        source = self.host_of(name)
        if not source:
            raise NotFound(f"instance {name!r} does not exist")
        if to == source:
            raise InvalidSpec(f"instance {name} is on host {to} already")
        src, dst = self._host(source), self._host(to)
        for host in (source, to):
            if host in self._down:
                raise HostDown(f"host {host} does not answer ({self._down[host][0]})")
        dom = src._lookup(name)
        meta = src._metadata(dom)
        if not dom.isActive():
            raise CloudError(f"instance {name} is not running: live migration moves a "
                             "running instance (start it first)")
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
        if root.find("devices/filesystem") is not None:
            raise CloudError(f"instance {name} has synced folders: a host folder does not "
                             "move with it (virtiofs), so it is not migrated")
        if dom.snapshotNum(0):
            raise CloudError(f"instance {name} has snapshots ({', '.join(src.snapshot_names(name))}): "
                             "internal snapshots do not migrate; delete them first")
        disks = self._disk_moves(src, name, root)
        made: list[tuple[str, str]] = []
        try:
            image = meta.get("image", "")
            if image and self.images.exists(image) and to != self.home_host:
                ensure_image(self, dst, image)
            for net in filter(None, meta.get("networks", "").split(",")):
                if net != USER_NETWORK:
                    self.span(net, to)
            filters = self._copy_filters(src, dst, root)
            for d in disks:
                self._make_on_destination(src, dst, d)
                made.append((d.pool, d.volume))
            params = {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{self.address(to)}",
                      libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS:
                          [d.target for d in disks if not d.readonly]}
            dest_xml = self._dest_xml(src, dst, root)
            if dest_xml is not None:
                params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = dest_xml
            started = time.monotonic()
            self._run(src.uri, dom, name, self.peer_uri(to), params, progress, cancelled)
        except BaseException:
            for pool, vol in made:
                try:
                    dst.delete_volume(pool, vol)
                except CloudError:
                    pass
            raise
        seconds = time.monotonic() - started
        with self._hosts_lock:
            self._where[name] = to
        for d in disks:                     # the source's copies are stale now
            src.delete_volume(d.pool, d.volume)
        for f in filters:                    # its own filter (its groups' may serve others)
            if f.endswith(f"-inst-{name}"):
                src.undefine_nwfilter(f)
        return {"seconds": seconds, "from": source, "to": to,
                **self._completed(dst, name)}

    # ----- before --------------------------------------------------------------------------
    def _disk_moves(self, src, name: str, root: ET.Element) -> list[DiskMove]:
        out = []
        for disk in root.findall("devices/disk"):
            source, target = disk.find("source"), disk.find("target")
            path = source.get("file") if source is not None else None
            if not path or target is None:
                continue
            try:
                vol = src.conn.storageVolLookupByPath(path)
                pool = vol.storagePoolLookupByVolume().name()
            except libvirt.libvirtError:
                raise CloudError(f"instance {name}'s disk {path} is in no storage pool: "
                                 "nbcloud cannot make it on another host") from None
            readonly = disk.find("readonly") is not None
            if readonly and (pool, vol.name()) != (INSTANCE_POOL, f"{name}.seed.iso"):
                raise CloudError(f"instance {name} has cdrom {Path(path).stem} attached: a "
                                 "cdrom does not move with it; detach it first")
            if pool not in (INSTANCE_POOL, *(tier_pool(t) for t in TIERS)):
                raise CloudError(f"instance {name}'s disk {vol.name()} is in pool {pool}, "
                                 "which nbcloud does not make on other hosts: detach it first")
            fmt, capacity, backing = volume_facts(vol)
            if backing and not readonly and _pool_of(src, backing[0]) != IMAGE_POOL:
                raise CloudError(f"instance {name}'s disk {vol.name()} hangs on "
                                 f"{Path(backing[0]).name}, which is not an image (a warm "
                                 "clone's base): it does not migrate")
            out.append(DiskMove(target.get("dev", ""), pool, vol.name(), readonly, fmt,
                                capacity, backing))
        return out

    @staticmethod
    def _make_on_destination(src, dst, d: DiskMove) -> None:
        if d.pool != INSTANCE_POOL:
            dst.ensure_tier_pool(d.pool.split("-", 1)[1])
        if d.readonly:
            copy_volume(src, dst, d.pool, d.volume)
        elif d.backing:
            backing = dst.volume_path(IMAGE_POOL, Path(d.backing[0]).name)
            dst.create_overlay(d.pool, d.volume, backing, d.backing[1], d.capacity)
        else:
            dst.create_volume(d.pool, d.volume, d.capacity, d.fmt)

    @staticmethod
    def _copy_filters(src, dst, root: ET.Element) -> list[str]:
        """nbcloud's filters the instance's interfaces use, and those they reference
        (defined on `dst`); returns their names."""
        todo = [ref.get("filter", "") for ref in root.iterfind("devices/interface/filterref")]
        found: dict[str, str] = {}          # name -> XML, referencing filters first
        while todo:
            name = todo.pop(0)
            if name in found or not name.startswith("nbcloud-"):
                continue
            try:
                found[name] = src.conn.nwfilterLookupByName(name).XMLDesc(0)
            except libvirt.libvirtError:
                continue
            todo += [r.get("filter", "") for r in ET.fromstring(found[name]).findall("filterref")]
        for xml in reversed(found.values()):   # what is referenced before its users
            copy_filter(dst, xml)
        return sorted(found)

    def _dest_xml(self, src, dst, root: ET.Element) -> str | None:
        """The domain's XML with the destination's folders where they differ from the
        source's (pools and console logs); None when every path is the same."""
        moves = {}
        for pool in {INSTANCE_POOL, IMAGE_POOL, *(tier_pool(t) for t in TIERS)}:
            try:
                a, b = (src._pool_path(p.pool(pool)) for p in (src, dst))
            except CloudError:
                continue
            if a and b and a != b:
                moves[a.rstrip("/") + "/"] = b.rstrip("/") + "/"
        logs_a, logs_b = str(src.paths["logs"]), str(dst.paths["logs"])
        if logs_a != logs_b:
            moves[logs_a.rstrip("/") + "/"] = logs_b.rstrip("/") + "/"
        if not moves:
            return None

        def moved(path: str) -> str:
            for a, b in moves.items():
                if path.startswith(a):
                    return b + path[len(a):]
            return path
        root = ET.fromstring(ET.tostring(root))
        for el in root.iter():
            for attr in ("file", "path"):
                if el.get(attr):
                    el.set(attr, moved(el.get(attr)))
            if el.tag in ("kernel", "initrd") and el.text:
                el.text = moved(el.text)
        return ET.tostring(root, encoding="unicode")

    def peer_uri(self, host: str) -> str:
        """The URI the other hosts' daemons reach `host` at: its own where it names a
        machine, else (a local home host) SSH to its address."""
        uri = self.host_uri(host)
        if is_remote_system(uri) or not is_local(uri):
            return uri
        return f"qemu+ssh://{self.address(host)}/system"

    # ----- during and after ----------------------------------------------------------------
    def _run(self, uri: str, dom, name: str, dconnuri: str, params: dict, progress,
             cancelled) -> None:
        outcome: dict[str, BaseException] = {}

        def work() -> None:
            try:
                dom.migrateToURI3(dconnuri, params, FLAGS)
            except libvirt.libvirtError as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=work, name=f"nbcloud-migrate-{name}", daemon=True)
        worker.start()
        aborted = False
        try:
            while worker.is_alive():
                worker.join(POLL_SECONDS)
                if cancelled is not None and cancelled() and not aborted:
                    aborted = self._abort(uri, dom, worker)
                if progress is not None and worker.is_alive():
                    try:
                        progress(*_progress_of(dom.jobStats(0)))
                    except libvirt.libvirtError:
                        pass
        except KeyboardInterrupt:
            aborted = self._abort(uri, dom, worker)
            if "error" in outcome:
                raise
            return              # too late to abort: it moved, and is recorded as moved
        if "error" in outcome:
            if aborted:
                raise KeyboardInterrupt(f"the migration of {name} was aborted")
            raise CloudError(f"migration of {name} failed: "
                             f"{outcome['error'].get_error_message()}") from None
        if progress is not None:
            progress("done", 1.0)

    @staticmethod
    def _abort(uri: str, dom, worker: threading.Thread) -> bool:
        """Abort the job (virDomainAbortJob) and wait for libvirt to settle it. Asked on a
        connection of its own to the source host: on the migration's connection, busy with
        progress queries, libvirt 9.0's client at times held the request back until the
        migration call returned (measured: sent 75 s late, the move done by then). Asked
        before the job has begun, libvirt has nothing to abort: asked again until it takes
        or the migration ends (then it has happened: the caller says so)."""
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError:
            conn = None                      # then on the migration's own connection
        try:
            mine = conn.lookupByUUID(dom.UUID()) if conn is not None else dom
            while worker.is_alive():
                try:
                    mine.abortJob()
                    break
                except libvirt.libvirtError:
                    worker.join(0.1)
        except libvirt.libvirtError:
            pass                             # gone from the source: it has moved
        finally:
            mine = None
            if conn is not None:
                conn.close()
        worker.join()
        return True

    @staticmethod
    def _completed(dst, name: str) -> dict:
        """The finished job's figures, as the destination keeps them."""
        try:
            stats = dst.conn.lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError:
            return {}
        return {"downtime_ms": stats.get("downtime"), "memory_bytes":
                stats.get("memory_processed"), "disk_bytes": stats.get("disk_processed"),
                "job_ms": stats.get("time_elapsed")}
