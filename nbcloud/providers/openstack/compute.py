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
from nbcloud.providers.types import Image, InstanceRequest, Provisioned

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
        if USER_NETWORK in networks:
            raise InvalidSpec("network 'user' (QEMU's user-mode networking) is a libvirt "
                              "thing: on OpenStack name a Neutron network")

    def provision(self, req: InstanceRequest, image: Image, undo: Undo) -> Provisioned:
        """Boot the server of `req` (ACTIVE when this returns), give it a floating IP
        where it can have one, and mark it; each step adds its undo."""
        flavor = self._nova_flavor(req.flavor.name)
        nets = [self._neutron_network(n) for n in req.networks]
        user_data = cloudinit.user_data_document(
            cloudinit.cloud_config(req.name, req.authorized_keys, req.host_key_private,
                                   req.host_key_public), req.user_data)
        meta = {"kind": "instance", "stack": req.stack, "image": req.image,
                "flavor": req.flavor.name, "networks": ",".join(req.networks),
                "hostkey": req.host_key_public, "key": req.key,
                "created": str(int(time.time()))}
        try:
            server = self.conn.compute.create_server(
                name=req.name, image_id=image.ref, flavor_id=flavor.id,
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
        self.conn.compute.reboot_server(self._server(name), "SOFT")

    def set_cpu_share(self, name: str, share: float) -> bool:
        return False   # the cloud's flavor decides; nbcloud caps nothing there

    def resize(self, name: str, flavor: Flavor) -> None:
        """Nova's resize to `flavor`, confirmed (the server keeps its power state)."""
        server = self._server(name)
        target = self._nova_flavor(flavor.name)
        self.conn.compute.resize_server(server, target.id)
        server = self.conn.compute.wait_for_server(server, status="VERIFY_RESIZE",
                                                   interval=1, wait=BOOT_TIMEOUT)
        self.conn.compute.confirm_server_resize(server)

    def shared_folders(self, name: str) -> list[tuple[str, str]]:
        return []

    # ----- delete ------------------------------------------------------------------------
    def delete_instance(self, name: str) -> dict[str, str]:
        server = self._server(name)
        meta = unmark(server.metadata)
        self._delete_server(server)
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


class StatsMixin:
    """Monitoring on OpenStack: server states from one listing; counters only where the
    cloud lets this user read Nova's diagnostics (an admin's by default)."""

    def domain_stats(self, names=None) -> dict[str, dict]:
        wanted = None if names is None else set(names)
        return {s.name: {"state": STATES.get(s.status, "unknown")}
                for s in self.conn.compute.servers(details=True)
                if wanted is None or s.name in wanted}


class NoAdoption:
    """What adopting an outside server would need: not offered on OpenStack yet."""

    def _no_adopt(self, *_args, **_kwargs):
        raise Unsupported(f"the openstack provider ({self.uri}) does not adopt servers "
                          "made outside nbcloud")

    domain_facts = mark_domain = attach_nic = detach_nic = _no_adopt


class NoBalancers:
    """Load balancers need Octavia, which this provider does not drive yet."""
    runs_balancers = False
    balancers_possible = False

    def balancer_health(self, name: str) -> dict[str, str]:
        return {}

    def balancer_running(self, name: str) -> bool | None:
        return None

    def _no_balancer(self, *_args, **_kwargs):
        raise Unsupported(f"the openstack provider ({self.uri}) has no load balancers: "
                          "Octavia is not driven by nbcloud yet")

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
