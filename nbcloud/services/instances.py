"""Instances: the `Instance` handle and `cloud.instances` (create, get, list, delete).

The provider makes and removes the machine (on libvirt, a domain with its seed, disks and
address reservations: providers/libvirt/compute.py); this service validates the request,
makes the instance's pinned SSH host key, records intent and outcome in the operations
log and the instance in the inventory, waits for SSH, and tells the other services (by
events) when an instance goes.
"""
from __future__ import annotations

from nbcloud.context import Context
from nbcloud.core.display import Table
from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, SSHError
from nbcloud.core.events import INSTANCE_DELETED
from nbcloud.core.flavors import check_fits, choose
from nbcloud.core.handle import Handle
from nbcloud.core.spec import Flavor, InstanceSpec, check_count, check_name
from nbcloud.core.undo import Undo
from nbcloud.providers.types import USER_NETWORK, InstanceRequest
from nbcloud.services import keys, ssh, terminals
from nbcloud.services.folders import Folders, SyncedFolder, parse_syncs
from nbcloud.services.hosts import Hosts
from nbcloud.services.resize import resize
from nbcloud.services.volumes import Volumes


class Instance(Handle):
    """A handle on one instance; properties read live state from the provider."""

    noun = "instance"

    def __init__(self, service: Instances, name: str):
        super().__init__(service, name)
        self._client = None
        self.base_missing = False   # made cold only for want of a warm base (create)

    @property
    def provider(self):
        return self.service.provider

    @property
    def meta(self) -> dict[str, str]:
        return self.provider.metadata(self.name)

    @property
    def ip(self) -> str:
        """Where nbcloud reaches it (on OpenStack: its floating IP)."""
        return self.meta.get("ip", "")

    @property
    def ips(self) -> dict[str, str]:
        """Its address on each of its networks: {network: address}."""
        pairs = (p.partition("=") for p in self.meta.get("ips", "").split(",") if "=" in p)
        return {net: ip for net, _, ip in pairs}

    @property
    def ssh_port(self) -> int:
        """22, or the loopback port forwarded to it on a user-mode network."""
        return int(self.meta.get("ssh_port") or 22)

    @property
    def state(self) -> str:
        return self.provider.state(self.name)

    @property
    def flavor(self) -> str:
        return self.meta.get("flavor", "")

    @property
    def image(self) -> str:
        return self.meta.get("image", "")

    @property
    def uuid(self) -> str:
        return self.provider.uuid(self.name)

    @property
    def boot(self) -> str:
        """How it came up: "cloned" (a warm clone), or "cold" and why."""
        return self.meta.get("boot") or "cold"

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
        self._client = self.connect()
        return self._client

    def connect(self):
        """A new SSH connection (paramiko client) to it, logged in, host key pinned."""
        meta = self.meta
        if not meta.get("hostkey"):
            raise SSHError(f"instance {self.name!r} was adopted: nbcloud pinned no host key "
                           "for it, so it does not SSH to it (pin it with `%cloud adopt "
                           f"{self.name} --ssh`)")
        user, key = meta.get("ssh_user") or "root", meta.get("key") or "default"
        try:
            return ssh.connect(meta["ip"], host_key=meta["hostkey"], user=user,
                               port=int(meta.get("ssh_port") or 22),
                               key_path=keys.login_key(key))
        except SSHError as exc:
            if meta.get("adopted") and "uthentication" in str(exc):
                raise SSHError(f"{self.name} refused {user}'s login with key {key!r}: nbcloud "
                               "does not install login keys on adopted instances; add "
                               f"`%cloud key show {key}`'s public key to the guest's "
                               f"~{user}/.ssh/authorized_keys") from None
            raise

    def terminal(self, *, serial: bool = False, cols: int = 80, rows: int = 24):
        """An interactive `Terminal` (services/terminals.py): its shell over SSH, or its
        serial console with `serial`; `start(on_output)` it, `write`, `close`."""
        return terminals.open_terminal(self, serial=serial, cols=cols, rows=rows)

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
                                   timeout=timeout or self.service.ctx.ssh_timeout,
                                   cancelled=cancelled)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def start(self, wait: bool = True) -> Instance:
        self.service.logged("start", self.name, self._start, wait)
        return self

    def _start(self, wait: bool) -> None:
        meta = self.meta
        if self.state != "running" and meta.get("boot", "").startswith("cloned"):
            self.provider.set_metadata(self.name, {**meta, "boot": "cold (started again)"})
        self.provider.start(self.name)
        if wait:
            self.wait_ready()
            self.apply_cpu_share()
        self.service.ctx.inventory.set_state("instance", self.name, "running")

    def apply_cpu_share(self) -> bool:
        # Shared-CPU flavors boot at full speed (like a cloud's launch credits) and are
        # held to their baseline share from then on (a started domain has no cap).
        try:
            flavor = self.provider.flavor(self.flavor)
        except CloudError:
            return True
        return flavor.cpu_share >= 1 or self.provider.set_cpu_share(self.name, flavor.cpu_share)

    def stop(self, timeout: float = 30.0) -> str:
        """Graceful ACPI shutdown, forced after `timeout` s; returns 'graceful'/'forced'."""
        self.close()
        how = self.service.logged("stop", self.name, self.provider.stop, self.name, timeout)
        self.service.ctx.inventory.set_state("instance", self.name, "stopped")
        return how

    def reboot(self) -> None:
        self.close()
        self.service.logged("reboot", self.name, self.provider.reboot, self.name)

    def delete(self, *, volumes: bool = False) -> None:
        self.close()
        self.service.delete(self.name, volumes=volumes)

    def snapshot(self, snapshot: str) -> None:
        """An internal snapshot of disks and, while running, memory."""
        check_name(snapshot, "snapshot name")
        self.provider.require("snapshots")
        self.service.logged("snapshot", self.name, self.provider.snapshot_create,
                            self.name, snapshot)

    def revert(self, snapshot: str) -> None:
        """Go back to `snapshot` (running again if it was taken while running)."""
        check_name(snapshot, "snapshot name")
        self.provider.require("snapshots")
        self.close()
        self.service.logged("revert", self.name, self.provider.snapshot_revert,
                            self.name, snapshot)
        if self.state == "running":   # a cloud's revert is a rebuild: a fresh boot
            self.wait_ready()

    def snapshots(self) -> list[str]:
        return self.provider.snapshot_names(self.name)

    def resize(self, flavor: str, timeout: float = 30.0) -> str:
        """Change flavor: live when only the CPU share differs, else stop, redefine,
        start. Returns which it did."""
        new = self.service.check_flavor(flavor)
        return self.service.logged("resize", self.name, resize, self, new, timeout)

    def provision(self, script: str, timeout: float = 600.0):
        """Run shell `script` in the instance now, over SSH (output recorded)."""
        return self.service.folders.provision(self, script, timeout)

    def provision_log(self, wait: float = 0.0):
        """The first-boot provisioner's output (waiting up to `wait` s for it)."""
        return self.service.folders.provision_log(self, wait)

    def console(self) -> str:
        """The serial console log of the current boot."""
        return self.provider.console_text(self.name)

    def console_file(self) -> str | None:
        """The serial console log as a file on this machine, where there is one (to
        follow it live)."""
        return self.provider.console_file(self.name)

    def screenshot(self):
        """The instance's VGA screen now, as a `Screenshot` (PNG; shown inline)."""
        from nbcloud.core.screenshot import Screenshot, as_png
        self.provider.require("screenshots")
        mime, data = self.provider.screenshot(self.name)
        try:
            return Screenshot(self.name, as_png(mime, data))
        except ValueError as exc:
            raise CloudError(f"screenshot of {self.name!r}: {exc}") from None

    def rows(self) -> dict[str, object]:
        meta = self.meta
        return {"state": self.state, "ip": meta.get("ip", ""), "flavor": meta.get("flavor", ""),
                "image": meta.get("image", ""), "boot": meta.get("boot") or "cold",
                "host key": self.host_key_fingerprint}

    def summary(self, rows: dict[str, object]) -> str:
        return (f"{rows['state']} ip={rows['ip']} flavor={rows['flavor']} image={rows['image']} "
                f"boot={str(rows['boot']).split()[0]}")


class Instances:
    """`cloud.instances`: create, get, list and delete instances."""

    def __init__(self, ctx: Context, volumes: Volumes, folders: Folders, hosts: Hosts):
        self.ctx = ctx
        self.provider = ctx.provider
        self.volumes = volumes
        self.folders = folders
        self.hosts = hosts
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

    def logged(self, verb: str, name: str, fn, *args):
        """Run `fn(*args)` as operation `verb` on instance `name`: its intent and outcome
        (the result, as detail) go to the operations log."""
        with self.ctx.inventory.operation(verb, "instance", name) as op:
            result = fn(*args)
            op.detail = str(result) if result else ""
        return result

    def check_flavor(self, name: str) -> Flavor:
        """Flavor `name`; a custom one must fit the host (its CPUs and memory)."""
        flavor = self.provider.flavor(name)
        if flavor.family == "custom":
            check_fits(flavor, *self.provider.capacity())
        return flavor

    def get(self, name: str) -> Instance:
        check_name(name, "instance name")
        self.provider.metadata(name)  # NotFound / NotManaged with a clear message
        return self._handles.setdefault(name, Instance(self, name))

    __getitem__ = get

    @property
    def boots(self) -> bool:
        """Whether instances really boot here (the test driver's never do)."""
        return not self.provider.is_test_driver

    def table(self) -> Table:
        """What `%cloud instance list` shows, from one metadata read per domain and one
        bulk state call (not a lookup per column)."""
        managed, states = self.provider.managed(), self.provider.domain_states()
        rows = [(name, states.get(name, "unknown"), meta.get("ip", ""),
                 meta.get("flavor", ""), meta.get("image", ""))
                for name, meta in sorted(managed.items()) if meta.get("kind") == "instance"]
        return self.hosts.instance_table(rows)

    def live(self) -> dict[str, dict]:
        """name -> what the provider has of each nbcloud instance now (one bulk read):
        'running', 'meta', sizes."""
        return self.provider.domains_live()[0]

    def state_of(self, name: str) -> str | None:
        """Instance `name`'s state now, or None if it is gone."""
        check_name(name, "instance name")
        try:
            return self.provider.state(name) if self.provider.exists(name) else None
        except CloudError:   # deleted meanwhile
            return None

    def list(self) -> list[Instance]:
        managed = self.provider.managed()
        return [self.get(name) for name in sorted(managed)
                if managed[name].get("kind") == "instance"]

    def create(self, name: str, image: str = "tiny", flavor: str | None = None,
               network: str | list[str] | tuple[str, ...] | None = None, *,
               vcpus: int | str | None = None, memory: int | str | None = None,
               user_data: str | None = None, key: str = "default", count: int = 1,
               wait: bool = True, stack: str = "adhoc",
               volumes: tuple[str, ...] | list[str] = (),
               progress=None, keep: bool = False,
               screen: bool = False, sync=(), provision: str | None = None,
               boot: str = "auto", host: str | None = None,
               group: str | None = None) -> Instance | list[Instance]:
        """Create instance `name` (or NAME-1..N with `count`); returns when SSH answers.
        `volumes` (existing data volumes) attach once it runs; the network defaults to the
        provider's. `progress` shows each stage (ui/progress.launch_progress); Ctrl-C
        raises `Interrupted`, saying what was left running and what was not made. `screen`
        adds a VGA adapter for `screenshot()`; `sync` shares host folders ("HOST:GUEST") by
        virtiofs, `provision` runs a script at first boot. `vcpus` and `memory` ("1G")
        instead of a `flavor` make a custom type (`custom-2-1024`). `boot`: "auto" clones
        where it can (else boots cold and builds the base after), "cold", or "clone".
        `host` pins it to a host; a `count`'s or a `group`'s members spread over hosts."""
        flavor = choose(flavor, vcpus, memory)
        network = network or self.provider.default_network
        networks = (network,) if isinstance(network, str) else tuple(network)
        self.provider.check_instance_networks(networks)
        folders = parse_syncs(sync)
        if folders:
            self.provider.require("folders")
        self.folders.check_host(folders)
        user_data = self.folders.user_data(folders, provision, user_data)
        pairs = tuple((f.host_dir, f.guest_dir) for f in folders)
        n = check_count(count, "count")
        spec = InstanceSpec(name, image, flavor, networks, user_data, key, screen, pairs,
                            boot, host, group or (name if n > 1 else None))
        self.check_flavor(spec.flavor)
        keys.user_key(spec.key or "default")  # an unknown key: refused before any change
        for vol in volumes:
            if n > 1:
                raise InvalidSpec("volume: a data volume attaches to one instance; "
                                  "use --volume with --count 1")
            if self.volumes.get(check_name(vol, "volume name")).attached_to:
                raise CloudError(f"volume {vol!r} is attached already: detach it first")
        from nbcloud.services.launch import launch, warm_base
        if boot == "clone":   # the base first, if need be; refused where no clone can be
            warm_base(self, spec, progress, build_missing=True)
        specs = [spec] if n == 1 else [
            InstanceSpec(f"{name}-{i}", image, flavor, networks, user_data, key, screen, pairs,
                         boot, host, spec.group) for i in range(1, n + 1)]
        insts = launch(self, specs, wait, stack, progress, keep)
        if any(inst.base_missing for inst in insts):   # the next ones are clones
            warm_base(self, spec, progress, build_missing=False)
        for inst in insts:
            for vol in volumes:
                self.volumes.attach(vol, inst.name)
            self._record_folders(inst, folders, wait)
        return insts[0] if n == 1 else insts

    def _record_folders(self, inst: Instance, folders: tuple[SyncedFolder, ...],
                        wait: bool) -> None:
        self.folders.record(inst.name, folders)
        if wait:
            self.folders.wait_mounted(inst, folders)

    def create_one(self, spec: InstanceSpec, wait: bool, stack: str,
                   watch=None, keep: bool = False) -> Instance:
        """One create; `watch` (launch.Watch) hears its stages and may cancel it."""
        provider, inv = self.provider, self.ctx.inventory
        if watch is not None:
            watch.stage(spec.name, "provisioning")
        self.hosts.forget_if_lost(spec.name)   # made again while its host is down
        if provider.exists(spec.name):
            raise AlreadyExists(f"instance {spec.name!r} exists already: pick another name "
                                "or delete it first")
        flavor = self.check_flavor(spec.flavor)
        image = provider.images.get(spec.image)
        for net in spec.networks:
            if net != USER_NETWORK:
                provider.network(net)  # NotFound before anything is logged
        host_private, host_public = keys.generate(f"{spec.name}-host")
        op = inv.begin("create", "instance", spec.name, image=spec.image,
                       flavor=spec.flavor, networks=list(spec.networks), stack=stack)
        undo = Undo()
        placed = self.hosts.claim(spec, flavor, op, undo)   # several hosts: where it goes
        request = InstanceRequest(
            spec.name, spec.image, flavor, spec.networks, stack, spec.key or "default",
            (keys.user_key(spec.key or "default").public,), host_public, host_private,
            spec.user_data, spec.screen, spec.sync, spec.boot, placed)
        del host_private
        unreachable = ""  # why SSH never answered, when `keep` keeps the instance anyway
        try:
            made = provider.provision(request, image, undo)
            inv.put("instance", spec.name, state="starting", uuid=made.uuid, stack=stack,
                    spec={"image": spec.image, "flavor": spec.flavor,
                          "networks": list(spec.networks),
                          **self.hosts.fields(placed and made.host, spec.group)})
            undo.add(lambda: inv.remove("instance", spec.name))
            if watch is not None:
                watch.check(spec.name)  # interrupted: roll back, nothing ran yet
                watch.stage(spec.name, "starting")
            boot = made.start() if made.start is not None else provider.start(spec.name)
            # dnsmasq learns the address while a cold guest boots; a clone is up at once,
            # and libvirt holds its calls while it updates dnsmasq: they go first
            published = made.publish() if made.start is None else []
            inst = Instance(self, spec.name)
            inst.base_missing = made.base_missing
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
                    inst.apply_cpu_share()
            for future in published or made.publish():
                future.result()
        except KeyboardInterrupt:
            if provider.exists(spec.name) and provider.state(spec.name) == "running":
                inv.finish(op, "interrupted", "left running, not yet SSH-ready")
                raise
            self._finish_undone(op, undo.run(), "interrupted, rolled back")
            raise
        except BaseException as exc:
            self._finish_undone(op, undo.run(), str(exc))
            raise
        if unreachable:
            inv.set_state("instance", spec.name, "unreachable")
            inv.finish(op, "failed", f"{unreachable}; kept as asked")
            self._handles[spec.name] = inst
            raise SSHError(f"{unreachable}: instance {spec.name!r} is kept as asked (read "
                           f"`%cloud instance console {spec.name}`, then delete it)")
        inv.set_state("instance", spec.name, "running" if wait else "starting")
        inv.finish(op, "ok", boot or made.boot)
        self._handles[spec.name] = inst
        if watch is not None:
            watch.stage(spec.name, "ready" if wait else "started")
        return inst

    def _finish_undone(self, op: int, undo_errors: list[str], why: str) -> None:
        """A create that failed and was undone is 'failed'; if the undo itself failed (the
        daemon died, say), what is left is unknown: 'interrupted', for `recover`."""
        if undo_errors:
            self.ctx.inventory.finish(op, "interrupted", f"{why}; the rollback failed too "
                                      f"({undo_errors[0]}): `%cloud recover {op}`")
        else:
            self.ctx.inventory.finish(op, "failed", why)

    def delete(self, name: str, *, volumes: bool = False) -> None:
        """Delete an instance: its machine, disks and address reservations. Attached data
        volumes are kept (detached), unless `volumes` asks to delete them."""
        check_name(name, "instance name")
        provider, inv = self.provider, self.ctx.inventory
        if self.hosts.is_lost(name):   # its host is down: its record and addresses go
            return self.hosts.delete_lost(name)
        provider.metadata(name)  # refuse before logging anything for a foreign domain
        self.close_session(name)
        self._handles.pop(name, None)
        meta: dict[str, str] = {}
        op = inv.begin("delete", "instance", name)
        try:
            meta.update(provider.delete_instance(name))
            inv.remove("instance", name)
            # what other services held for it: volumes, security groups, port forwards
            self.ctx.events.emit(INSTANCE_DELETED, name=name, meta=meta)
        except BaseException as exc:
            # some of it may be done (the domain undefined, its disks not yet deleted):
            # settle it with `recover` (resume finishes it)
            inv.finish(op, "interrupted", f"{exc}: `%cloud recover {op}`")
            raise
        inv.finish(op, "ok")
        if volumes:
            for vol in filter(None, meta.get("volumes", "").split(",")):
                self.volumes.delete(vol)
