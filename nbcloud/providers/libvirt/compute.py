"""Instances on libvirt: what makes a domain out of an `InstanceRequest`, and what goes when
one is deleted.

A create reserves an address per network (a DHCP host entry and a DNS record), writes a
NoCloud seed (the pinned host key, the login key, static addresses, the user-data), makes
the root disk (a copy-on-write overlay of a disk image, or an empty scratch disk for a
kernel-boot image), and defines the domain with nbcloud's metadata mark. Every step adds
its undo, so a create that fails half-way leaves nothing.
"""
from __future__ import annotations

import concurrent.futures
import os
import socket
import tempfile
import time
from pathlib import Path

from nbcloud.core import cloudinit
from nbcloud.core.errors import InvalidSpec, Unsupported
from nbcloud.core.flavors import CATALOGUE, get_flavor
from nbcloud.core.spec import Flavor, sync_tag
from nbcloud.core.undo import Undo
from nbcloud.images.clone_identity import identity_message
from nbcloud.providers.libvirt import accel
from nbcloud.providers.libvirt.clones import Base
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.local import is_local
from nbcloud.providers.libvirt.networks import DEFAULT_NETWORK
from nbcloud.providers.libvirt.volumes import INSTANCE_POOL
from nbcloud.providers.types import USER_NETWORK, Image, InstanceRequest, Provisioned

# What QEMU's user-mode network gives the guest (fixed by SLIRP): address, gateway, DNS.
USER_GUEST = ("10.0.2.15/24", "10.0.2.2", ("10.0.2.3",))
#: Files of an instance in the instance pool, by suffix.
DISK_SUFFIXES = ("seed.iso", "root.qcow2", "local.qcow2")


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (QEMU binds it when the instance starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_network(uri: str) -> str:
    """`nbcloud` (a NAT bridge) where the daemon can make bridges; else user-mode
    networking (`user`), as on a session daemon."""
    return DEFAULT_NETWORK if uri.startswith(("qemu:///system", "qemu+", "test:")) \
        else USER_NETWORK


def shared_dirs(pairs: tuple[tuple[str, str], ...]) -> tuple[lx.SharedDir, ...]:
    """The virtiofs devices of synced folders (host folder, guest folder)."""
    return tuple(lx.SharedDir(host, sync_tag(i)) for i, (host, _guest) in enumerate(pairs))


class ComputeMixin:
    """The instance operations of `LibvirtProvider` (see providers/base.py, Compute)."""

    uri: str
    paths: dict[str, Path]
    net_authority: object   # the provider that holds the networks' DHCP and DNS
    engine_flavors = False   # nbcloud's catalogue: a CPU share changes live

    @property
    def default_network(self) -> str:
        """The network instances join unless told otherwise (see `default_network`)."""
        return default_network(self.uri)

    # ----- flavors ---------------------------------------------------------------------
    def flavor(self, name: str) -> Flavor:
        """Flavor `name` from nbcloud's catalogue (InvalidSpec naming the families)."""
        return get_flavor(name)

    def flavors(self) -> list[Flavor]:
        return list(CATALOGUE.values())

    def _fixed_catalogue(self, *_args) -> Flavor:
        raise Unsupported(f"the libvirt provider ({self.uri}) has a fixed flavor catalogue "
                          "(FAMILY.SIZE): give an instance a size of its own with "
                          "--vcpus N --memory M")

    create_flavor = delete_flavor = _fixed_catalogue

    # ----- key pairs: the guest gets the public key in its seed; nothing kept here ------
    def put_keypair(self, name: str, public_key: str) -> None:
        """Nothing: libvirt keeps no key pairs."""

    def delete_keypair(self, name: str) -> None:
        """Nothing: libvirt keeps no key pairs."""

    # ----- projects: one host has none ---------------------------------------------------
    def project_names(self) -> list[str]:
        return []

    def _no_projects(self, *_args) -> dict:
        raise Unsupported(f"the libvirt provider ({self.uri}) has no projects or users: "
                          "one host, one account (an OpenStack cloud has them)")

    create_project = project_quotas = delete_project = project_login = _no_projects

    # ----- the accelerator -------------------------------------------------------------
    def accelerator(self, probe: bool = True) -> dict:
        """{'accelerator': 'kvm'|'tcg'|'test', 'reason': ...}; probed once, then cached."""
        found = getattr(self, "_accel", None)
        if found is None:
            found = accel.cached(self)
        if found is None or (probe and "not probed" in found["reason"]):
            tiny = self.images.get("tiny") if self.images.exists("tiny") else None
            found = accel.probe(self, tiny, self.paths["logs"])
        self._accel = found
        return found

    # ----- create ----------------------------------------------------------------------
    def provision(self, req: InstanceRequest, image: Image, undo: Undo) -> Provisioned:
        """Reserve addresses, write the seed, make the disks and define the domain of
        `req` (not started); each step adds its undo. Returns its UUID and how to tell
        the network's DNS/DHCP about it once it starts."""
        dhcp = self.net_authority   # where the networks' DHCP and DNS are (another host's)
        nets = [dhcp.network(n) for n in req.networks if n != USER_NETWORK]
        accelerator = self.accelerator()["accelerator"]
        base, how, base_missing = self._boot_plan(req, image)
        nics, statics, reservations = [], [], []
        user_port = None
        if USER_NETWORK in req.networks:
            user_port = free_loopback_port()
            mac = self.random_mac()
            nics.append(lx.Nic(USER_NETWORK, mac, host_port=user_port))
            statics.append(cloudinit.StaticNet(mac, *USER_GUEST))
        for net in nets:
            mac = self.random_mac()
            r = dhcp.reserve_address(net.name, mac, req.name)
            undo.add(lambda r=r: (concurrent.futures.wait([r.live] if r.live else []),
                                  dhcp.release_address(r.network, r.mac)))
            reservations.append(r)
            nics.append(lx.Nic(net.name, mac, ip=r.ip))
            statics.append(cloudinit.StaticNet(mac, f"{r.ip}/{r.prefix}", r.gateway,
                                               (r.gateway,)))
        seed_name = f"{req.name}.seed.iso"
        with tempfile.TemporaryDirectory(prefix="nbcloud-seed-") as tmp:
            seed = Path(tmp) / "seed.iso"
            files = cloudinit.build_seed(seed, instance_id=req.name, hostname=req.name,
                                         authorized_keys=list(req.authorized_keys),
                                         host_key_private=req.host_key_private,
                                         host_key_public=req.host_key_public,
                                         network=statics, user_data=req.user_data)
            seed_path = self.upload_volume(INSTANCE_POOL, seed_name, seed)
        undo.add(lambda: self.delete_volume(INSTANCE_POOL, seed_name))
        disks = []
        boot = None
        if image.kernel:  # kernel images, and disk images that carry their kernel
            boot = lx.KernelBoot(image.kernel, image.initrd, image.cmdline)
        root = f"{req.name}.root.qcow2"
        if image.disk:
            path = self.create_overlay(INSTANCE_POOL, root, image.disk, image.disk_format,
                                       max(image.virtual_size or image.size, 2 << 30))
        else:
            # A kernel-boot image has no disk: each instance gets an empty qcow2 scratch
            # disk (sparse), which is also where internal snapshots keep memory state.
            path = self.create_volume(INSTANCE_POOL, root, 1 << 30).path
        undo.add(lambda: self.delete_volume(INSTANCE_POOL, root))
        disks.append(lx.Disk(path, "vda"))
        disks.append(lx.Disk(seed_path, f"vd{chr(ord('a') + len(disks))}", fmt="raw",
                             readonly=True))
        flavor = req.flavor
        if flavor.local_disk:  # storage flavors: an empty local disk after the seed
            local = f"{req.name}.local.qcow2"
            info = self.create_volume(INSTANCE_POOL, local, flavor.local_disk)
            undo.add(lambda: self.delete_volume(INSTANCE_POOL, local))
            disks.append(lx.Disk(info.path, f"vd{chr(ord('a') + len(disks))}"))
        meta = {"kind": "instance", "stack": req.stack, "image": req.image,
                "flavor": flavor.name, "networks": ",".join(req.networks),
                "ip": reservations[0].ip if reservations else "127.0.0.1",
                "ips": ",".join(f"{r.network}={r.ip}" for r in reservations)
                or f"{USER_NETWORK}={USER_GUEST[0].split('/')[0]}",
                "mac": ",".join(nic.mac for nic in nics), "hostkey": req.host_key_public,
                "key": req.key, "created": str(int(time.time())), "boot": how,
                **({"ssh_port": str(user_port)} if user_port else {})}
        d = lx.DomainDef(name=req.name, vcpus=flavor.vcpus, memory=flavor.memory,
                         domain_type=accel.domain_type(accelerator), boot=boot,
                         disks=tuple(disks), nics=tuple(nics), metadata=meta,
                         console_log=str(self.paths["logs"] / f"nbcloud-{req.name}.console.log"),
                         video=req.screen, shares=shared_dirs(req.shares),
                         smbios_serial="ds=nocloud")
        uuid = self.define(d)
        undo.add(lambda: self.remove_console_log(d.console_log, req.name))
        undo.add(lambda: self.delete(req.name))
        start = None
        if base is not None:   # what the clone hears on its console, made now
            message = identity_message(
                name=req.name, nets=statics, macs=[(base.mac, nics[0].mac)],
                authorized_keys=req.authorized_keys, host_key_private=req.host_key_private,
                host_key_public=req.host_key_public, user_data=req.user_data,
                seed_files=files)
            start = lambda: self.start_clone(req.name, base, message, seed_path)  # noqa: E731
        # dnsmasq learns the addresses while the guest boots (it asks by DHCP only after
        # its static address is up, seconds later); not during the start, which the
        # ~0.5 s of CPU this costs libvirt would slow down.
        return Provisioned(uuid, lambda: [dhcp.publish(r) for r in reservations], how, start,
                           base_missing)

    def _boot_plan(self, req: InstanceRequest, image: Image) -> tuple[Base | None, str, bool]:
        """(the base to clone, "cloned", False), or (None, "cold (why)", whether only the
        base was missing); with boot "clone" and no clone possible, InvalidSpec."""
        if req.boot == "cold":
            return None, "cold (asked)", False
        why = self._clone_obstacle(image, req.flavor, req.networks, req.screen, req.shares)
        found = why or self._fresh_base(image, req.flavor)
        if isinstance(found, str):
            if req.boot == "clone":
                raise InvalidSpec(f"boot clone: {found}")
            return None, f"cold ({found})", not why
        return found, "cloned", False

    # ----- delete ----------------------------------------------------------------------
    def delete_instance(self, name: str) -> dict[str, str]:
        """Undefine instance `name` and remove its disks, console log and address
        reservations; returns the metadata it had. Its data volumes are detached (they
        went with the definition) and kept."""
        log = self.console_log_path(name)
        meta = self.delete(name)
        self.remove_console_log(log, name)
        if "warm" in self.paths:
            self.clone_socket(name).unlink(missing_ok=True)
        self.remove_instance_files(name)
        for net in filter(None, meta.get("networks", "").split(",")):
            if net == USER_NETWORK:
                continue
            for mac in filter(None, meta.get("mac", "").split(",")):
                self.net_authority.release_address(net, mac)
        return meta

    def remove_instance_files(self, name: str) -> list[str]:
        """Delete the seed, root and local disks of instance `name` (those that exist);
        returns the names of those deleted."""
        return [f"{name}.{suffix}" for suffix in DISK_SUFFIXES
                if self.delete_volume(INSTANCE_POOL, f"{name}.{suffix}")]

    def remove_console_log(self, path: str | None, name: str) -> None:
        """Delete the console log nbcloud gave instance `name` (only that file, only on
        this machine): it goes with the instance, as it may hold what its user-data
        printed."""
        if path and is_local(self.uri) and Path(path).name == f"nbcloud-{name}.console.log":
            Path(path).unlink(missing_ok=True)

    # ----- the console -------------------------------------------------------------------
    def console_file(self, name: str) -> str | None:
        """The serial console log of `name` as a file on this machine, if there is one."""
        path = self.console_log_path(name)
        if not path or not is_local(self.uri):
            return None
        return path

    def console_text(self, name: str) -> str:
        """The serial console log of the current boot ('' where it cannot be read)."""
        path = self.console_file(name)
        if not path or not os.path.exists(path):
            return ""
        return Path(path).read_text(errors="replace")

    def check_instance_networks(self, networks: tuple[str, ...]) -> None:
        """Refuse networks that cannot be combined (user-mode networking is alone)."""
        if USER_NETWORK in networks and len(networks) > 1:
            raise InvalidSpec("network: 'user' (user-mode networking) cannot be combined "
                             "with other networks; pick it alone")

    def shared_folders(self, name: str) -> list[tuple[str, str]]:
        """(host folder, tag) of every virtiofs folder of instance `name`."""
        import xml.etree.ElementTree as ET
        root = ET.fromstring(self.domain_xml_desc(name))
        out = []
        for fs in root.findall("devices/filesystem"):
            drv, src, tgt = fs.find("driver"), fs.find("source"), fs.find("target")
            if drv is None or drv.get("type") != "virtiofs" or src is None or tgt is None:
                continue
            out.append((src.get("dir", ""), tgt.get("dir", "")))
        return out
