"""Floating addresses on OpenStack: Neutron floating IPs.

nbcloud gives each server on a network behind a router a floating IP when it makes it
(that is where it reaches it by SSH), and a floating IP maps every port one to one: a
forward of port P is that address's port P, so `--host-port` must equal `--port` here.
The rules are Neutron's, so nothing is lost by a restart and `restore` has nothing to do.
"""
from __future__ import annotations

from nbcloud.core.errors import CloudError, InvalidSpec
from nbcloud.providers.types import Forward


class ForwardMixin:
    """The port-forward operations of `OpenStackProvider` (providers/base.py, Forwards)."""

    def _floating_ip(self, instance: str):
        server = self._server(instance)
        for port in self.conn.network.ports(device_id=server.id):
            for fip in self.conn.network.ips(port_id=port.id):
                return fip
        return None

    def forward_address(self, instance: str, port: int, host_port: int | None,
                        host_address: str | None, taken: set[int],
                        proto: str = "tcp") -> tuple[str, int]:
        """(host address, host port) of a forward to `instance`'s `port`: its floating IP
        and the same port."""
        if host_port is not None and host_port != port:
            raise InvalidSpec(f"on OpenStack a floating IP maps every port to the same "
                              f"port: --host-port {host_port} must be {port} (or left out)")
        fip = self._floating_ip(instance)
        if fip is None:
            raise CloudError(f"instance {instance!r} has no floating IP (its first network "
                             "has no router to the outside): use a nat network")
        return fip.floating_ip_address, port

    def add_forwards(self, forwards: list[Forward]) -> None:
        for f in forwards:
            fip = self._floating_ip(f.instance)
            if fip is None or fip.floating_ip_address != f.host_address:
                raise CloudError(f"instance {f.instance!r} no longer has floating IP "
                                 f"{f.host_address}")

    def remove_forwards(self, names: set[str]) -> None:
        """Nothing to undo: the floating IP stays with its server (nbcloud's SSH path)."""

    def live_forwards(self, forwards: list[Forward] | None = None) -> dict[str, list[str]]:
        """Every forward whose instance still has its floating IP is in place."""
        attached = {fip.floating_ip_address for fip in self.conn.network.ips()
                    if fip.port_id}
        return {f.name: ["floating-ip"] for f in forwards or []
                if f.host_address in attached}
