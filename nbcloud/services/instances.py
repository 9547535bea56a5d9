"""Instances: the `Instance` handle and `cloud.instances` (create, get, list, delete)."""
from __future__ import annotations

import concurrent.futures
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nbcloud.core.display import card
from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, SSHError
from nbcloud.core.flavors import get_flavor
from nbcloud.core.spec import InstanceSpec, check_count, check_name
from nbcloud.providers.libvirt import accel
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.images import Image
from nbcloud.providers.libvirt.provider import is_local
from nbcloud.services import keys, ssh
from nbcloud.services.folders import spec_shares

if TYPE_CHECKING:
    from nbcloud.api import Cloud

INSTANCE_POOL = "nbcloud"
DEFAULT_NETWORK = "nbcloud"
USER_NETWORK = lx.USER_NETWORK
# What QEMU's user-mode network gives the guest (fixed by SLIRP): address, gateway, DNS.
USER_GUEST = ("10.0.2.15/24", "10.0.2.2", ("10.0.2.3",))


def default_network(uri: str) -> str:
    """`nbcloud` (a NAT bridge) where the daemon can make bridges; else user networking."""
    return DEFAULT_NETWORK if uri.startswith(("qemu:///system", "qemu+", "test:")) \
        else USER_NETWORK


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (QEMU binds it when the instance starts)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    """A handle on one instance; properties read live state from libvirt."""

    def __init__(self, cloud: Cloud, name: str):
        self.cloud = cloud
        self.name = name
        self._client = None

    @property
    def meta(self) -> dict[str, str]:
        return self.cloud.backend.metadata(self.name)

    @property
    def ip(self) -> str:
        return self.meta.get("ip", "")

    @property
    def ssh_port(self) -> int:
        """22, or the loopback port forwarded to it on a user-mode network."""
        return int(self.meta.get("ssh_port") or 22)

    @property
    def state(self) -> str:
        return self.cloud.backend.state(self.name)

    @property
    def flavor(self) -> str:
        return self.meta.get("flavor", "")

    @property
    def image(self) -> str:
        return self.meta.get("image", "")

    @property
    def uuid(self) -> str:
        return self.cloud.backend.uuid(self.name)

    @property
    def host_key_fingerprint(self) -> str:
        hostkey = self.meta.get("hostkey")
        return ssh.fingerprint(hostkey) if hostkey else "none pinned (adopted)"

    def _ssh_client(self):
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self._client.close()
        meta = self.meta
        if not meta.get("hostkey"):
            raise SSHError(f"instance {self.name!r} was adopted: nbcloud pinned no host key "
                           "for it, so it does not SSH to it (pin it with `%cloud adopt "
                           f"{self.name} --ssh`)")
        user, key = meta.get("ssh_user") or "root", meta.get("key") or "default"
        try:
            self._client = ssh.connect(meta["ip"], host_key=meta["hostkey"], user=user,
                                       port=int(meta.get("ssh_port") or 22),
                                       key_path=keys.login_key(key))
        except SSHError as exc:
            if meta.get("adopted") and "uthentication" in str(exc):
                raise SSHError(f"{self.name} refused {user}'s login with key {key!r}: nbcloud "
                               "does not install login keys on adopted instances; add "
                               f"`%cloud key show {key}`'s public key to the guest's "
                               f"~{user}/.ssh/authorized_keys") from None
            raise
        return self._client

    def ssh(self, command: str, *, check: bool = True, timeout: float = 300.0) -> str:
        """Run `command` over SSH (host key pinned); return its standard output."""
        return self.ssh_result(command, check=check, timeout=timeout).stdout

    def ssh_result(self, command: str, *, check: bool = True,
                   timeout: float = 300.0) -> ssh.CommandResult:
        return ssh.run(self._ssh_client(), command, timeout=timeout, check=check)

    def wait_ready(self, timeout: float | None = None, cancelled=None) -> float:
        """Wait until SSH answers; return the seconds waited. `cancelled()` true stops
        the wait (KeyboardInterrupt)."""
        meta = self.meta
        return ssh.wait_for_banner(meta.get("ip", ""), int(meta.get("ssh_port") or 22),
                                   timeout=timeout or self.cloud.ssh_timeout,
                                   cancelled=cancelled)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def start(self, wait: bool = True) -> Instance:
        self.cloud.instances._run("start", self.name, self._start, wait)
        return self

    def _start(self, wait: bool) -> None:
        self.cloud.backend.start(self.name)
        if wait:
            self.wait_ready()
            self._apply_cpu_share()
        self.cloud.inventory.set_state(self.cloud.uri, "instance", self.name, "running")

    def _apply_cpu_share(self) -> bool:
        # Shared-CPU flavors boot at full speed (like a cloud's launch credits) and are
        # held to their baseline share from then on.
        try:
            flavor = get_flavor(self.flavor)
        except CloudError:
            return True
        return self.cloud.backend.set_cpu_share(self.name, flavor.cpu_share)

    def stop(self, timeout: float = 30.0) -> str:
        """Graceful ACPI shutdown, forced after `timeout` s; returns 'graceful'/'forced'."""
        self.close()
        how = self.cloud.instances._run("stop", self.name, self.cloud.backend.stop,
                                        self.name, timeout)
        self.cloud.inventory.set_state(self.cloud.uri, "instance", self.name, "stopped")
        return how

    def reboot(self) -> None:
        self.close()
        self.cloud.instances._run("reboot", self.name, self.cloud.backend.reboot, self.name)

    def delete(self, *, volumes: bool = False) -> None:
        self.close()
        self.cloud.instances.delete(self.name, volumes=volumes)

    def snapshot(self, snapshot: str) -> None:
        """An internal snapshot of disks and, while running, memory."""
        check_name(snapshot, "snapshot name")
        self.cloud.instances._run("snapshot", self.name, self.cloud.backend.snapshot_create,
                                  self.name, snapshot)

    def revert(self, snapshot: str) -> None:
        """Go back to `snapshot` (running again if it was taken while running)."""
        check_name(snapshot, "snapshot name")
        self.close()
        self.cloud.instances._run("revert", self.name, self.cloud.backend.snapshot_revert,
                                  self.name, snapshot)

    def snapshots(self) -> list[str]:
        return self.cloud.backend.snapshot_names(self.name)

    def resize(self, flavor: str, timeout: float = 30.0) -> str:
        """Change flavor: live when only the CPU share differs, else stop, redefine,
        start. Returns which it did."""
        new = get_flavor(flavor)
        return self.cloud.instances._run("resize", self.name, self._resize, new, timeout)

    def _resize(self, new, timeout: float) -> str:
        backend, meta = self.cloud.backend, self.meta
        old = get_flavor(meta["flavor"])
        running = self.state == "running"
        if (new.vcpus, new.memory) == (old.vcpus, old.memory):
            how = "live"
            if running and not backend.set_cpu_share(self.name, new.cpu_share):
                how = "live (the CPU share is not enforced on this host)"
        else:
            how = "stopped, redefined and started" if running else "redefined"
            if running:
                self.stop(timeout)
            backend.resize(self.name, new.vcpus, new.memory)
        backend.set_metadata(self.name, {**meta, "flavor": new.name})
        if running and how.startswith(("stopped", "redefined")):
            self.start()
        return how

    def console(self) -> str:
        """The serial console log of the current boot."""
        path = self.cloud.backend.console_log_path(self.name)
        if not path or not is_local(self.cloud.uri) or not os.path.exists(path):
            return ""
        return Path(path).read_text(errors="replace")

    def screenshot(self):
        """The instance's VGA screen now, as a `Screenshot` (PNG; shown inline)."""
        from nbcloud.core.screenshot import Screenshot, as_png
        mime, data = self.cloud.backend.screenshot(self.name)
        try:
            return Screenshot(self.name, as_png(mime, data))
        except ValueError as exc:
            raise CloudError(f"screenshot of {self.name!r}: {exc}") from None

    def __repr__(self) -> str:
        try:
            return (f"<Instance {self.name} {self.state} ip={self.ip} flavor={self.flavor} "
                    f"image={self.image}>")
        except CloudError:
            return f"<Instance {self.name} (gone)>"

    def _repr_html_(self) -> str:
        try:
            rows = {"state": self.state, "ip": self.ip, "flavor": self.flavor,
                    "image": self.image, "host key": self.host_key_fingerprint}
        except CloudError:
            return card("instance", self.name, None)
        return card("instance", self.name, rows)


def remove_console_log(cloud: Cloud, path: str | None, name: str) -> None:
    """Delete the console log nbcloud gave instance `name` (only that file, only on this
    machine): it goes with the instance, as it may hold what its user-data printed."""
    if path and is_local(cloud.uri) and Path(path).name == f"nbcloud-{name}.console.log":
        Path(path).unlink(missing_ok=True)


class Instances:
    """`cloud.instances`: create, get, list and delete instances."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud
        self._handles: dict[str, Instance] = {}

    def close(self) -> None:
        for inst in self._handles.values():
            inst.close()

    def close_session(self, name: str) -> None:
        """End `name`'s cached SSH session, if any: its next command connects afresh
        (with the host key its metadata pins now)."""
        handle = self._handles.get(name)
        if handle is not None:
            handle.close()

    def _run(self, verb: str, name: str, fn, *args):
        with self.cloud.inventory.operation(self.cloud.uri, verb, "instance", name) as op:
            result = fn(*args)
            op.detail = str(result) if result else ""
        return result

    def get(self, name: str) -> Instance:
        check_name(name, "instance name")
        self.cloud.backend.metadata(name)  # NotFound / NotManaged with a clear message
        return self._handles.setdefault(name, Instance(self.cloud, name))

    __getitem__ = get

    def list(self) -> list[Instance]:
        managed = self.cloud.backend.managed()
        return [self.get(name) for name in sorted(managed)
                if managed[name].get("kind") == "instance"]

    def create(self, name: str, image: str = "tiny", flavor: str = "t.nano",
               network: str | list[str] | tuple[str, ...] | None = None, *,
               user_data: str | None = None, key: str = "default", count: int = 1,
               wait: bool = True, stack: str = "adhoc",
               volumes: tuple[str, ...] | list[str] = (),
               progress=None, keep: bool = False,
               screen: bool = False, sync=(), provision: str | None = None
               ) -> Instance | list[Instance]:
        """Create instance `name` (or NAME-1..N with `count`); returns when SSH answers.
        `volumes` are existing data volumes, attached once it runs. The network defaults
        to `nbcloud`, or to user-mode networking (`user`) on a session daemon.
        `progress` (see progress.launch_progress) shows each stage with elapsed time.
        Ctrl-C raises `Interrupted`, saying what was left running and what was not made.
        `screen` adds a VGA adapter so `screenshot()` works (it costs boot time).
        `sync` shares host folders ("HOST:GUEST") by virtiofs; `provision` is a shell
        script run at first boot (synced.py)."""
        network = network or default_network(self.cloud.uri)
        networks = (network,) if isinstance(network, str) else tuple(network)
        if USER_NETWORK in networks and len(networks) > 1:
            raise InvalidSpec("network: 'user' (user-mode networking) cannot be combined "
                              "with other networks; pick it alone")
        from nbcloud.services import folders as synced
        folders = synced.parse_syncs(sync)
        synced.check_host(folders, self.cloud.uri)
        user_data = synced.user_data(folders, provision, user_data)
        pairs = tuple((f.host_dir, f.guest_dir) for f in folders)
        spec = InstanceSpec(name, image, flavor, networks, user_data, key, screen, pairs)
        n = check_count(count, "count")
        get_flavor(spec.flavor)
        keys.user_key(spec.key or "default")  # an unknown key: refused before any change
        for vol in volumes:
            if n > 1:
                raise InvalidSpec("volume: a data volume attaches to one instance; "
                                  "use --volume with --count 1")
            if self.cloud.volumes.get(check_name(vol, "volume name")).attached_to:
                raise CloudError(f"volume {vol!r} is attached already: detach it first")
        from nbcloud.services.launch import launch
        if n == 1:
            inst = launch(self, [spec], wait, stack, progress, keep)[0]
            for vol in volumes:
                self.cloud.volumes.attach(vol, inst.name)
            self.cloud.sync.record(inst.name, folders)
            if wait:
                self.cloud.sync.wait_mounted(inst, folders)
            return inst
        specs = [InstanceSpec(f"{name}-{i}", image, flavor, networks, user_data, key, screen,
                              pairs) for i in range(1, n + 1)]
        insts = launch(self, specs, wait, stack, progress, keep)
        for inst in insts:
            self.cloud.sync.record(inst.name, folders)
            if wait:
                self.cloud.sync.wait_mounted(inst, folders)
        return insts

    def _create_one(self, spec: InstanceSpec, wait: bool, stack: str,
                    watch=None, keep: bool = False) -> Instance:
        """One create; `watch` (launch.Watch) hears its stages and may cancel it."""
        cloud, backend = self.cloud, self.cloud.backend
        if watch is not None:
            watch.stage(spec.name, "provisioning")
        if backend.exists(spec.name):
            raise AlreadyExists(f"instance {spec.name!r} exists already: pick another name "
                                "or delete it first")
        flavor = get_flavor(spec.flavor)
        image = cloud.images.get(spec.image)
        nets = [backend.network(n) for n in spec.networks if n != USER_NETWORK]
        accelerator = cloud.accelerator()["accelerator"]
        op = cloud.inventory.begin(cloud.uri, "create", "instance", spec.name,
                                   image=spec.image, flavor=spec.flavor,
                                   networks=list(spec.networks), stack=stack)
        undo: list = []
        reservations: list = []
        unreachable = ""  # why SSH never answered, when `keep` keeps the instance anyway
        try:
            uuid = self._provision(spec, flavor, image, nets, accelerator, stack, undo,
                                   reservations)
            cloud.inventory.put(cloud.uri, "instance", spec.name, state="starting",
                                uuid=uuid, stack=stack,
                                spec={"image": spec.image, "flavor": spec.flavor,
                                      "networks": list(spec.networks)})
            undo.append(lambda: cloud.inventory.remove(cloud.uri, "instance", spec.name))
            if watch is not None:
                watch.check(spec.name)  # interrupted: roll back, nothing ran yet
                watch.stage(spec.name, "starting")
            backend.start(spec.name)
            # dnsmasq learns the addresses while the guest boots (it asks by DHCP only
            # after its static address is up, seconds later); not during the start,
            # which the ~0.5 s of CPU this costs libvirt would slow down.
            published = [backend.publish(r) for r in reservations]
            inst = Instance(cloud, spec.name)
            if wait:
                if watch is not None:
                    watch.stage(spec.name, "booting")
                try:
                    inst.wait_ready(cancelled=watch.cancelled if watch is not None else None)
                except SSHError as exc:
                    if not keep:
                        raise SSHError(f"{exc}: instance {spec.name!r} was deleted "
                                       "(keep=True, or --keep, keeps it to read its "
                                       "console)") from None
                    unreachable = str(exc)
                else:
                    inst._apply_cpu_share()
            for future in published:
                future.result()
        except KeyboardInterrupt:
            if backend.exists(spec.name) and backend.state(spec.name) == "running":
                cloud.inventory.finish(op, "interrupted", "left running, not yet SSH-ready")
                raise
            self._finish_undone(op, self._undo(undo), "interrupted, rolled back")
            raise
        except BaseException as exc:
            self._finish_undone(op, self._undo(undo), str(exc))
            raise
        if unreachable:
            cloud.inventory.set_state(cloud.uri, "instance", spec.name, "unreachable")
            cloud.inventory.finish(op, "failed", f"{unreachable}; kept as asked")
            self._handles[spec.name] = inst
            raise SSHError(f"{unreachable}: instance {spec.name!r} is kept as asked (read "
                           f"`%cloud instance console {spec.name}`, then delete it)")
        cloud.inventory.set_state(cloud.uri, "instance", spec.name,
                                  "running" if wait else "starting")
        cloud.inventory.finish(op, "ok")
        self._handles[spec.name] = inst
        if watch is not None:
            watch.stage(spec.name, "ready" if wait else "started")
        return inst

    @staticmethod
    def _undo(undo: list) -> list[str]:
        """Run the undo steps, last first; returns the errors of those that failed."""
        errors = []
        for step in reversed(undo):
            try:
                step()
            except Exception as exc:  # best effort: keep undoing the rest
                errors.append(str(exc))
        return errors

    def _finish_undone(self, op: int, undo_errors: list[str], why: str) -> None:
        """A create that failed and was undone is 'failed'; if the undo itself failed (the
        daemon died, say), what is left is unknown: 'interrupted', for `recover`."""
        if undo_errors:
            self.cloud.inventory.finish(op, "interrupted", f"{why}; the rollback failed too "
                                        f"({undo_errors[0]}): `%cloud recover {op}`")
        else:
            self.cloud.inventory.finish(op, "failed", why)

    def _provision(self, spec, flavor, image: Image, nets, accelerator: str, stack: str,
                   undo: list, reservations: list) -> str:
        """Reserve addresses (into `reservations`), write the seed, define the domain;
        return its UUID."""
        from nbcloud.core import cloudinit
        cloud, backend = self.cloud, self.cloud.backend
        nics, statics = [], []
        user_port = None
        if USER_NETWORK in spec.networks:
            user_port = free_loopback_port()
            mac = backend.random_mac()
            nics.append(lx.Nic(USER_NETWORK, mac, host_port=user_port))
            statics.append(cloudinit.StaticNet(mac, *USER_GUEST))
        for net in nets:
            mac = backend.random_mac()
            r = backend.reserve_address(net.name, mac, spec.name)
            undo.append(lambda r=r: (concurrent.futures.wait([r.live] if r.live else []),
                                     backend.release_address(r.network, r.mac)))
            reservations.append(r)
            nics.append(lx.Nic(net.name, mac))
            statics.append(cloudinit.StaticNet(mac, f"{r.ip}/{r.prefix}", r.gateway,
                                               (r.gateway,)))
        host_private, host_public = keys.generate(f"{spec.name}-host")
        user = keys.user_key(spec.key or "default")
        seed_name = f"{spec.name}.seed.iso"
        with tempfile.TemporaryDirectory(prefix="nbcloud-seed-") as tmp:
            seed = Path(tmp) / "seed.iso"
            cloudinit.build_seed(seed, instance_id=spec.name, hostname=spec.name,
                                 authorized_keys=[user.public],
                                 host_key_private=host_private, host_key_public=host_public,
                                 network=statics, user_data=spec.user_data)
            seed_path = backend.upload_volume(INSTANCE_POOL, seed_name, seed)
        del host_private
        undo.append(lambda: backend.delete_volume(INSTANCE_POOL, seed_name))
        disks = []
        boot = None
        if image.kernel:  # kernel images, and disk images that carry their kernel
            boot = lx.KernelBoot(image.kernel, image.initrd, image.cmdline)
        if image.disk:
            root = f"{spec.name}.root.qcow2"
            path = backend.create_overlay(INSTANCE_POOL, root, image.disk, image.disk_format,
                                          max(image.virtual_size or image.size, 2 << 30))
            undo.append(lambda: backend.delete_volume(INSTANCE_POOL, root))
            disks.append(lx.Disk(path, "vda"))
        else:
            # A kernel-boot image has no disk: each instance gets an empty qcow2 scratch
            # disk (sparse), which is also where internal snapshots keep memory state.
            root = f"{spec.name}.root.qcow2"
            path = backend.create_volume(INSTANCE_POOL, root, 1 << 30).path
            undo.append(lambda: backend.delete_volume(INSTANCE_POOL, root))
            disks.append(lx.Disk(path, "vda"))
        disks.append(lx.Disk(seed_path, f"vd{chr(ord('a') + len(disks))}", fmt="raw",
                             readonly=True))
        if flavor.local_disk:  # storage flavors: an empty local disk after the seed
            local = f"{spec.name}.local.qcow2"
            info = backend.create_volume(INSTANCE_POOL, local, flavor.local_disk)
            undo.append(lambda: backend.delete_volume(INSTANCE_POOL, local))
            disks.append(lx.Disk(info.path, f"vd{chr(ord('a') + len(disks))}"))
        meta = {"kind": "instance", "stack": stack, "image": spec.image,
                "flavor": spec.flavor, "networks": ",".join(spec.networks),
                "ip": reservations[0].ip if reservations else "127.0.0.1",
                "ips": ",".join(f"{r.network}={r.ip}" for r in reservations)
                or f"{USER_NETWORK}={USER_GUEST[0].split('/')[0]}",
                "mac": ",".join(nic.mac for nic in nics), "hostkey": host_public,
                "key": spec.key or "default", "created": str(int(time.time())),
                **({"ssh_port": str(user_port)} if user_port else {})}
        d = lx.DomainDef(name=spec.name, vcpus=flavor.vcpus, memory=flavor.memory,
                         domain_type=accel.domain_type(accelerator), boot=boot,
                         disks=tuple(disks), nics=tuple(nics), metadata=meta,
                         console_log=str(cloud.paths["logs"] / f"nbcloud-{spec.name}.console.log"),
                         video=spec.screen, shares=spec_shares(spec.sync),
                         smbios_serial="ds=nocloud")
        uuid = backend.define(d)
        undo.append(lambda: remove_console_log(cloud, d.console_log, spec.name))
        undo.append(lambda: backend.delete(spec.name))
        return uuid

    def delete(self, name: str, *, volumes: bool = False) -> None:
        """Delete an instance: its domain, seed, root overlay and address reservations.
        Attached data volumes are kept (detached), unless `volumes` asks to delete them."""
        check_name(name, "instance name")
        cloud, backend = self.cloud, self.cloud.backend
        backend.metadata(name)  # refuse before logging anything for a foreign domain
        handle = self._handles.pop(name, None)
        if handle:
            handle.close()
        meta: dict[str, str] = {}

        def _delete() -> None:
            log = backend.console_log_path(name)
            meta.update(backend.delete(name))
            remove_console_log(cloud, log, name)
            # its data volumes went with the domain's definition; their files stay
            cloud.volumes.released(name, meta)
            for suffix in ("seed.iso", "root.qcow2", "local.qcow2"):
                backend.delete_volume(INSTANCE_POOL, f"{name}.{suffix}")
            for net in filter(None, meta.get("networks", "").split(",")):
                if net == USER_NETWORK:
                    continue
                for mac in filter(None, meta.get("mac", "").split(",")):
                    backend.release_address(net, mac)
            cloud.inventory.remove(cloud.uri, "instance", name)
            # what services held for it: security group memberships, port forwards
            cloud.secgroups.instance_deleted(name)
            cloud.floating.instance_deleted(name)
        op = cloud.inventory.begin(cloud.uri, "delete", "instance", name)
        try:
            _delete()
        except BaseException as exc:
            # some of it may be done (the domain undefined, its disks not yet deleted):
            # settle it with `recover` (resume finishes it)
            cloud.inventory.finish(op, "interrupted", f"{exc}: `%cloud recover {op}`")
            raise
        cloud.inventory.finish(op, "ok")
        if volumes:
            for vol in filter(None, meta.get("volumes", "").split(",")):
                cloud.volumes.delete(vol)
