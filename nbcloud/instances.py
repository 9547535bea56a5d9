"""Instances: the `Instance` handle and `cloud.instances` (create, get, list, delete)."""
from __future__ import annotations

import concurrent.futures
import html
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from . import accel, keys, ssh
from .backend.libvirt import xml as lx
from .backend.libvirt.backend import is_local
from .errors import AlreadyExists, CloudError, InvalidSpec
from .flavors import get_flavor
from .images.store import Image
from .spec import InstanceSpec, check_count, check_name

if TYPE_CHECKING:
    from .api import Cloud

INSTANCE_POOL = "nbcloud"
DEFAULT_NETWORK = "nbcloud"


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
        return ssh.fingerprint(self.meta["hostkey"])

    def _ssh_client(self):
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self._client.close()
        meta = self.meta
        self._client = ssh.connect(meta["ip"], host_key=meta["hostkey"],
                                   key_path=keys.login_key(meta.get("key", "default")))
        return self._client

    def ssh(self, command: str, *, check: bool = True, timeout: float = 300.0) -> str:
        """Run `command` over SSH (host key pinned); return its standard output."""
        return self.ssh_result(command, check=check, timeout=timeout).stdout

    def ssh_result(self, command: str, *, check: bool = True,
                   timeout: float = 300.0) -> ssh.CommandResult:
        return ssh.run(self._ssh_client(), command, timeout=timeout, check=check)

    def wait_ready(self, timeout: float | None = None) -> float:
        """Wait until SSH answers; return the seconds waited."""
        return ssh.wait_for_banner(self.ip, timeout=timeout or self.cloud.ssh_timeout)

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
            return f"<b>instance</b> {html.escape(self.name)} (gone)"
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
        return f"<b>instance</b> {html.escape(self.name)}<table>{cells}</table>"


class Instances:
    """`cloud.instances`: create, get, list and delete instances."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud
        self._handles: dict[str, Instance] = {}

    def close(self) -> None:
        for inst in self._handles.values():
            inst.close()

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
               network: str | list[str] | tuple[str, ...] = DEFAULT_NETWORK, *,
               user_data: str | None = None, key: str = "default", count: int = 1,
               wait: bool = True, stack: str = "adhoc",
               volumes: tuple[str, ...] | list[str] = ()) -> Instance | list[Instance]:
        """Create instance `name` (or NAME-1..N with `count`); returns when SSH answers.
        `volumes` are existing data volumes, attached once it runs."""
        networks = (network,) if isinstance(network, str) else tuple(network)
        spec = InstanceSpec(name, image, flavor, networks, user_data, key)
        n = check_count(count, "count")
        get_flavor(spec.flavor)
        keys.user_key(spec.key or "default")  # an unknown key: refused before any change
        for vol in volumes:
            if n > 1:
                raise InvalidSpec("volume: a data volume attaches to one instance; "
                                  "use --volume with --count 1")
            if self.cloud.volumes.get(check_name(vol, "volume name")).attached_to:
                raise CloudError(f"volume {vol!r} is attached already: detach it first")
        if n == 1:
            inst = self._create_one(spec, wait, stack)
            for vol in volumes:
                self.cloud.volumes.attach(vol, inst.name)
            return inst
        specs = [InstanceSpec(f"{name}-{i}", image, flavor, networks, user_data, key)
                 for i in range(1, n + 1)]
        with ThreadPoolExecutor(max_workers=min(n, 8)) as pool:
            futures = [pool.submit(self._create_one, s, wait, stack) for s in specs]
            return [f.result() for f in futures]

    def _create_one(self, spec: InstanceSpec, wait: bool, stack: str) -> Instance:
        cloud, backend = self.cloud, self.cloud.backend
        if backend.exists(spec.name):
            raise AlreadyExists(f"instance {spec.name!r} exists already: pick another name "
                                "or delete it first")
        flavor = get_flavor(spec.flavor)
        image = cloud.images.get(spec.image)
        nets = [backend.network(n) for n in spec.networks]
        accelerator = cloud.accelerator()["accelerator"]
        op = cloud.inventory.begin(cloud.uri, "create", "instance", spec.name,
                                   image=spec.image, flavor=spec.flavor,
                                   networks=list(spec.networks), stack=stack)
        undo: list = []
        reservations: list = []
        try:
            uuid = self._provision(spec, flavor, image, nets, accelerator, stack, undo,
                                   reservations)
            cloud.inventory.put(cloud.uri, "instance", spec.name, state="starting",
                                uuid=uuid, stack=stack,
                                spec={"image": spec.image, "flavor": spec.flavor,
                                      "networks": list(spec.networks)})
            undo.append(lambda: cloud.inventory.remove(cloud.uri, "instance", spec.name))
            backend.start(spec.name)
            # dnsmasq learns the addresses while the guest boots (it asks by DHCP only
            # after its static address is up, seconds later); not during the start,
            # which the ~0.5 s of CPU this costs libvirt would slow down.
            published = [backend.publish(r) for r in reservations]
            inst = Instance(cloud, spec.name)
            if wait:
                inst.wait_ready()
                inst._apply_cpu_share()
            for future in published:
                future.result()
        except KeyboardInterrupt:
            if backend.exists(spec.name) and backend.state(spec.name) == "running":
                cloud.inventory.finish(op, "interrupted", "left running, not yet SSH-ready")
                raise
            self._undo(undo)
            cloud.inventory.finish(op, "failed", "interrupted, rolled back")
            raise
        except BaseException as exc:
            self._undo(undo)
            cloud.inventory.finish(op, "failed", str(exc))
            raise
        cloud.inventory.set_state(cloud.uri, "instance", spec.name,
                                  "running" if wait else "starting")
        cloud.inventory.finish(op, "ok")
        self._handles[spec.name] = inst
        return inst

    @staticmethod
    def _undo(undo: list) -> None:
        for step in reversed(undo):
            try:
                step()
            except Exception:  # best effort: keep undoing the rest
                pass

    def _provision(self, spec, flavor, image: Image, nets, accelerator: str, stack: str,
                   undo: list, reservations: list) -> str:
        """Reserve addresses (into `reservations`), write the seed, define the domain;
        return its UUID."""
        from . import cloudinit
        cloud, backend = self.cloud, self.cloud.backend
        nics, statics = [], []
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
                "ip": reservations[0].ip,
                "ips": ",".join(f"{r.network}={r.ip}" for r in reservations),
                "mac": ",".join(nic.mac for nic in nics), "hostkey": host_public,
                "key": spec.key or "default", "created": str(int(time.time()))}
        d = lx.DomainDef(name=spec.name, vcpus=flavor.vcpus, memory=flavor.memory,
                         domain_type=accel.domain_type(accelerator), boot=boot,
                         disks=tuple(disks), nics=tuple(nics), metadata=meta,
                         console_log=str(cloud.paths["logs"] / f"nbcloud-{spec.name}.console.log"))
        uuid = backend.define(d)
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
            meta.update(backend.delete(name))
            # its data volumes went with the domain's definition; their files stay
            cloud.volumes.released(name, meta)
            for suffix in ("seed.iso", "root.qcow2", "local.qcow2"):
                backend.delete_volume(INSTANCE_POOL, f"{name}.{suffix}")
            for net in filter(None, meta.get("networks", "").split(",")):
                for mac in filter(None, meta.get("mac", "").split(",")):
                    backend.release_address(net, mac)
            cloud.inventory.remove(cloud.uri, "instance", name)
        self._run("delete", name, _delete)
        if volumes:
            for vol in filter(None, meta.get("volumes", "").split(",")):
                cloud.volumes.delete(vol)
