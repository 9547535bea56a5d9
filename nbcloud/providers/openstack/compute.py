"""Instances on OpenStack: Nova servers carrying nbcloud's mark in their metadata.

A create boots a server from the image on the requested networks with a config drive and
user-data that holds nbcloud's #cloud-config (hostname, login key, and the ed25519 host
key nbcloud generated and pins: never trust on first use), then gives it a floating IP
when its first network is behind a router to the outside, which is where nbcloud (and
the user) reach it by SSH. Every step adds its undo.
"""
from __future__ import annotations

import base64
import time

from nbcloud.core import cloudinit
from nbcloud.core.errors import (
    CloudError,
    InvalidSpec,
    NotFound,
    NotManaged,
    Unsupported,
)
from nbcloud.core.spec import USER_NETWORK, Flavor, check_name
from nbcloud.core.undo import Undo
from nbcloud.providers.types import CloneCheck, Image, InstanceRequest, Provisioned

MARK = "nbcloud:"
#: Nova's status -> nbcloud's state words (as libvirt's provider says them).
STATES = {"ACTIVE": "running", "SHUTOFF": "stopped", "PAUSED": "paused",
          "SUSPENDED": "suspended", "BUILD": "starting", "REBOOT": "running",
          "HARD_REBOOT": "running", "RESIZE": "resizing", "VERIFY_RESIZE": "resizing",
          "ERROR": "crashed", "DELETED": "deleted", "SHELVED_OFFLOADED": "stopped"}
BOOT_TIMEOUT = 600.0       # seconds Nova may take to make a server ACTIVE


def mark(values: dict[str, str]) -> dict[str, str]:
    """nbcloud's metadata as server metadata items (`nbcloud:KEY`)."""
    return {MARK + k: str(v) for k, v in values.items()}


def unmark(metadata: dict) -> dict[str, str] | None:
    """The nbcloud metadata of a server, or None if it carries no mark."""
    ours = {k[len(MARK):]: v for k, v in (metadata or {}).items() if k.startswith(MARK)}
    return ours if ours.get("kind") else None


class ComputeMixin:
    """The instance operations of `OpenStackProvider` (see providers/base.py, Compute)."""

    default_network = "nbcloud"
    engine_flavors = True   # Nova's flavors: a change is Nova's resize

    # ----- lookups ---------------------------------------------------------------------
    def _servers(self) -> list:
        return list(self.conn.compute.servers(details=True))

    def _server(self, name: str):
        check_name(name, "instance name")
        found = [s for s in self.conn.compute.servers(details=True, name=f"^{name}$")
                 if s.name == name]
        if not found:
            raise NotFound(f"instance {name!r} does not exist (see `%cloud instance list`)")
        ours = [s for s in found if unmark(s.metadata)]
        if not ours:
            raise NotManaged(f"server {name!r} was not made by nbcloud (no nbcloud mark): "
                             "nbcloud leaves it alone")
        return ours[0]

    def exists(self, name: str) -> bool:
        check_name(name, "instance name")
        return any(s.name == name for s in
                   self.conn.compute.servers(details=False, name=f"^{name}$"))

    def metadata(self, name: str) -> dict[str, str]:
        return unmark(self._server(name).metadata)

    def set_metadata(self, name: str, values: dict[str, str]) -> None:
        server = self._server(name)
        old = {k for k in server.metadata if k.startswith(MARK)}
        new = mark(values)
        self.conn.compute.set_server_metadata(server, **new)
        gone = sorted(old - set(new))
        if gone:
            self.conn.compute.delete_server_metadata(server, gone)

    def managed(self) -> dict[str, dict[str, str]]:
        return {s.name: m for s in self._servers() if (m := unmark(s.metadata))}

    def state(self, name: str) -> str:
        return STATES.get(self._server(name).status, "unknown")

    def uuid(self, name: str) -> str:
        return self._server(name).id

    def domain_states(self) -> dict[str, str]:
        return {s.name: STATES.get(s.status, "unknown") for s in self._servers()}

    def domains_live(self) -> tuple[dict[str, dict], list[str]]:
        """name -> {meta, vcpus, memory, running, uuid, nics} of nbcloud's servers, and the
        names of the others: one server listing and one port listing."""
        ports: dict[str, list] = {}
        nets = {n.id: n.name for n in self.conn.network.networks()} \
            if "networks" in self.capabilities else {}
        if nets:
            for p in self.conn.network.ports(device_owner="compute:nova"):
                ports.setdefault(p.device_id, []).append((nets.get(p.network_id, "?"),
                                                          p.mac_address.lower()))
        ours, others = {}, []
        for s in self._servers():
            meta = unmark(s.metadata)
            if meta is None:
                others.append(s.name)
                continue
            f = s.flavor or {}
            ours[s.name] = {"meta": meta, "uuid": s.id, "running": s.status == "ACTIVE",
                            "vcpus": int(f.get("vcpus") or 0),
                            "memory": int(f.get("ram") or 0) << 20,
                            "nics": ports.get(s.id, [])}
        return ours, sorted(others)

    # ----- create ----------------------------------------------------------------------
    def check_instance_networks(self, networks: tuple[str, ...]) -> None:
        """Refuse what nbcloud could not reach: it logs in through a floating IP on the
        first network, which needs a router to the outside."""
        if USER_NETWORK in networks:
            raise InvalidSpec("network 'user' (QEMU's user-mode networking) is a libvirt "
                              "thing: on OpenStack name a Neutron network")
        if "networks" in self.capabilities and networks and \
                self._external_for(self._neutron_network(networks[0])) is None:
            raise InvalidSpec(
                f"network {networks[0]!r} has no router to the outside, so nbcloud could "
                "not reach the instance by SSH (on OpenStack through a floating IP): name a "
                f"nat network first, e.g. --network {self.default_network} --network "
                f"{networks[0]}")

    def provision(self, req: InstanceRequest, image: Image, undo: Undo) -> Provisioned:
        """Boot the server of `req` (ACTIVE when this returns), give it a floating IP
        where it can have one, and mark it; each step adds its undo."""
        flavor = self._nova_flavor(req.flavor.name)
        nets = [self._neutron_network(n) for n in req.networks]
        self._release_floating(req.name)   # a predecessor's, deleted behind our back
        user_data = cloudinit.user_data_document(
            cloudinit.cloud_config(req.name, req.authorized_keys, req.host_key_private,
                                   req.host_key_public), req.user_data)
        meta = {"kind": "instance", "stack": req.stack, "image": req.image,
                "flavor": req.flavor.name, "networks": ",".join(req.networks),
                "hostkey": req.host_key_public, "key": req.key,
                "created": str(int(time.time()))}
        self.put_keypair(req.key, req.authorized_keys[0])   # Nova's copy of its public half
        try:
            server = self.conn.compute.create_server(
                name=req.name, image_id=image.ref, flavor_id=flavor.id, key_name=req.key,
                networks=[{"uuid": n.id} for n in nets], config_drive=True,
                user_data=base64.b64encode(user_data.encode()).decode(),
                metadata=mark(meta), security_groups=[{"name": g} for g in
                                                      self.instance_groups([], False)])
        except Exception as exc:  # noqa: BLE001  (the SDK's errors carry the API's reason)
            raise CloudError(f"Nova refused instance {req.name!r}: {_reason(exc)}") from None
        undo.add(lambda: self._delete_server(server))
        server = self._wait_active(server)
        ports = list(self.conn.network.ports(device_id=server.id))
        by_net = {p.network_id: p for p in ports}
        fixed = {n.name: by_net[n.id].fixed_ips[0]["ip_address"]
                 for n in nets if n.id in by_net and by_net[n.id].fixed_ips}
        macs = [by_net[n.id].mac_address for n in nets if n.id in by_net]
        address = fixed.get(nets[0].name, "")
        external = self._external_for(nets[0])
        if external is not None and nets[0].id in by_net:
            fip = self.conn.network.create_ip(floating_network_id=external.id,
                                              port_id=by_net[nets[0].id].id,
                                              description=f"nbcloud: {req.name}")
            undo.add(lambda: self.conn.network.delete_ip(fip, ignore_missing=True))
            self.conn.network.set_tags(fip, ["nbcloud"])
            address = fip.floating_ip_address
        meta.update(ip=address, ips=",".join(f"{n}={ip}" for n, ip in fixed.items()),
                    mac=",".join(macs))
        self.conn.compute.set_server_metadata(server, **mark(meta))
        return Provisioned(server.id, lambda: [])

    def _wait_active(self, server):
        try:
            return self.conn.compute.wait_for_server(server, status="ACTIVE",
                                                     failures=["ERROR"], interval=1,
                                                     wait=BOOT_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            fault = getattr(self.conn.compute.get_server(server.id), "fault", None) or {}
            why = fault.get("message") or _reason(exc)
            raise CloudError(f"instance {server.name!r} did not become ACTIVE: {why}") \
                from None

    def _delete_server(self, server) -> None:
        for port in self.conn.network.ports(device_id=server.id):
            for fip in self.conn.network.ips(port_id=port.id):
                if "nbcloud" in (fip.tags or []):
                    self.conn.network.delete_ip(fip, ignore_missing=True)
        self.conn.compute.delete_server(server, ignore_missing=True)
        self.conn.compute.wait_for_delete(server, interval=1, wait=BOOT_TIMEOUT)
        self._release_floating(server.name)

    def _release_floating(self, name: str) -> None:
        """Delete the floating IPs nbcloud gave servers called `name` that are bound to no
        port any more: a server deleted behind nbcloud's back (`openstack server delete`)
        leaves its floating IP, which Nova does not release."""
        if "floating" not in self.capabilities:
            return
        for fip in self.conn.network.ips(project_id=self.project_id):
            if not fip.port_id and "nbcloud" in (fip.tags or []) and \
                    fip.description == f"nbcloud: {name}":
                self.conn.network.delete_ip(fip, ignore_missing=True)

    # ----- power -------------------------------------------------------------------------
    def start(self, name: str) -> None:
        server = self._server(name)
        if server.status == "SHUTOFF":
            self.conn.compute.start_server(server)
        if server.status != "ACTIVE":
            self._wait_active(server)

    def stop(self, name: str, timeout: float = 30.0) -> str:
        """Nova's stop (an ACPI shutdown, then power off after the cloud's own timeout);
        'graceful' when it was off within `timeout` s, else 'forced'."""
        server = self._server(name)
        if server.status == "SHUTOFF":
            return "graceful"
        start = time.monotonic()
        self.conn.compute.stop_server(server)
        self.conn.compute.wait_for_server(server, status="SHUTOFF", interval=1,
                                          wait=max(timeout, 120.0))
        return "graceful" if time.monotonic() - start <= timeout else "forced"

    def reboot(self, name: str) -> None:
        """Nova's soft reboot (an ACPI restart; Nova powers the server off and on itself
        where the guest does not answer), waited for as `openstack server reboot --wait`
        does: when it returns, the old boot is gone, and a command does not reach it."""
        server = self._server(name)
        self.conn.compute.reboot_server(server, "SOFT")
        self._wait_active(self.conn.compute.get_server(server.id))   # REBOOT -> ACTIVE

    def set_cpu_share(self, name: str, share: float) -> bool:
        return False   # the cloud's flavor decides; nbcloud caps nothing there

    def resize(self, name: str, flavor: Flavor) -> None:
        """Nova's resize to `flavor`, confirmed (the server keeps its power state). A
        resize Nova gives up on (no host for it, say) is one line with Nova's reason."""
        server = self._server(name)
        target = self._nova_flavor(flavor.name)
        if (server.flavor or {}).get("original_name") == target.name:
            return
        try:
            self.conn.compute.resize_server(server, target.id)
        except Exception as exc:  # noqa: BLE001
            raise CloudError(f"Nova refused to resize {name!r}: {_reason(exc)}") from None
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            time.sleep(1)
            server = self.conn.compute.get_server(server.id)
            if server.status == "VERIFY_RESIZE":
                break
            if server.status == "ERROR" or (server.status in ("ACTIVE", "SHUTOFF")
                                            and not server.task_state):
                raise CloudError(f"Nova did not resize {name!r}: {self._failure(server)} (an "
                                 "admin sees why: `openstack server event list`)")
            if time.monotonic() > deadline:
                raise CloudError(f"Nova did not resize {name!r} within {BOOT_TIMEOUT:.0f} s")
        self.conn.compute.confirm_server_resize(server)
        while self.conn.compute.get_server(server.id).status == "VERIFY_RESIZE":
            if time.monotonic() > deadline:
                raise CloudError(f"Nova did not confirm the resize of {name!r}")
            time.sleep(1)

    def _failure(self, server) -> str:
        """Why Nova's last action on `server` failed (its fault, or the action's event)."""
        fault = (server.fault or {}).get("message") if server.fault else None
        if fault:
            return fault
        for action in self.conn.compute.server_actions(server):
            detail = self.conn.compute.get_server_action(action.request_id, server)
            for event in detail.events or []:
                if event.get("result") == "Error":
                    return f"{event.get('event')} failed" + (
                        f": {event['traceback'].strip().splitlines()[-1]}"
                        if event.get("traceback") else "")
            return f"{action.action}: {action.message or 'no reason given'}"
        return "no reason given"

    def shared_folders(self, name: str) -> list[tuple[str, str]]:
        return []

    # ----- delete ------------------------------------------------------------------------
    def delete_instance(self, name: str) -> dict[str, str]:
        """The server, its floating IP, and its snapshots (images nbcloud made of it)."""
        server = self._server(name)
        meta = unmark(server.metadata)
        self._delete_server(server)
        for image in self._snapshots(name).values():
            if image.owner == self.project_id:
                self.conn.image.delete_image(image, ignore_missing=True)
        return meta

    def delete(self, name: str) -> dict[str, str]:
        return self.delete_instance(name)

    def remove_instance_files(self, name: str) -> list[str]:
        return []   # a server's disks go with it

    # ----- console and snapshots -----------------------------------------------------------
    def console_text(self, name: str) -> str:
        out = self.conn.compute.get_server_console_output(self._server(name))
        return (out or {}).get("output", "")

    def console_file(self, name: str) -> str | None:
        return None

    def open_serial(self, name: str):
        raise Unsupported(f"the openstack provider ({self.uri}) has no interactive serial "
                          f"console here: use the SSH terminal (`%cloud instance terminal "
                          f"{name}`)")

    def screenshot(self, name: str) -> tuple[str, bytes]:
        raise Unsupported(f"the openstack provider ({self.uri}) has no screenshots: use "
                          "the console log (`%cloud instance console NAME`)")

    def snapshot_create(self, name: str, snapshot: str) -> None:
        server = self._server(name)
        image = self.conn.compute.create_server_image(
            server, f"{name}.{snapshot}", metadata={"nbcloud_snapshot_of": name,
                                                    "nbcloud_snapshot": snapshot},
            wait=True, timeout=BOOT_TIMEOUT)
        if image is None:
            raise CloudError(f"Nova made no image of {name!r}")

    def _snapshots(self, name: str) -> dict[str, object]:
        return {i.properties.get("nbcloud_snapshot"): i
                for i in self.conn.image.images()
                if (i.properties or {}).get("nbcloud_snapshot_of") == name}

    def snapshot_names(self, name: str) -> list[str]:
        check_name(name, "instance name")
        return sorted(n for n in self._snapshots(name) if n)

    def snapshot_revert(self, name: str, snapshot: str) -> None:
        """Rebuild the server from its snapshot image (disks only: Nova keeps no memory)."""
        image = self._snapshots(name).get(snapshot)
        if image is None:
            raise NotFound(f"instance {name!r} has no snapshot {snapshot!r}")
        server = self._server(name)
        self.conn.compute.rebuild_server(server, image=image.id)
        self._wait_active(server)


def _reason(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    text = details if isinstance(details, str) and details else str(exc)
    return " ".join(text.split())[:300]


class NoAdoption:
    """What adopting an outside server would need: not offered on OpenStack yet."""

    def _no_adopt(self, *_args, **_kwargs):
        raise Unsupported(f"the openstack provider ({self.uri}) does not adopt servers "
                          "made outside nbcloud")

    domain_facts = mark_domain = attach_nic = detach_nic = _no_adopt


class NoClones:
    """Nova boots every server cold: no warm clones here."""

    def clone_check(self, image, flavor, networks, screen=False, shares=()) -> CloneCheck:
        return CloneCheck(False, f"the openstack provider ({self.uri}) boots every server "
                                 "cold")

    def warm_base(self, image, flavor, network, progress=None) -> str:
        self.require("clones")
        return ""


class NoBalancers:
    """Load balancers need Octavia, which this provider does not drive yet."""
    runs_balancers = False
    balancers_possible = False

    def balancer_health(self, name: str) -> dict[str, str]:
        return {}

    def balancer_running(self, name: str) -> bool | None:
        return None

    def _no_balancer(self, *_args, **_kwargs):
        there = "load-balancer" in getattr(self, "catalog", ())
        raise Unsupported(f"the openstack provider ({self.uri}) has no load balancers: "
                          + ("this cloud has Octavia, which nbcloud does not drive yet"
                             if there else "this cloud's catalog has no load-balancer "
                             "service (Octavia)"))

    apply_balancer = ensure_balancer = stop_balancer = _no_balancer


class NoStoragePools:
    """A cloud places its volumes itself: no storage pools to manage."""

    def pool_names(self) -> list[str]:
        return []

    def pools_info(self) -> list:
        return []

    def _no_pools(self, *_args, **_kwargs):
        raise Unsupported(f"the openstack provider ({self.uri}) has no storage pools (the "
                          "cloud places volumes itself; a volume's type is its tier)")

    pool = pool_info = check_new_pool = create_pool = delete_pool = _no_pools
