"""Flavors on OpenStack: Nova's, named in nbcloud's family words.

A flavor's CPU share is what the cloud enforces: Nova's libvirt driver turns the extra
specs `quota:cpu_quota` / `quota:cpu_period` into the same CFS quota nbcloud sets on a
libvirt host, so `t.*` flavors carry them (`flavor create --share`). Its family is
nbcloud's word for what it is: `shared` with a share below one vCPU, `storage` with an
ephemeral disk, else by memory per vCPU (`highcpu` under 512 MiB, `highmem` from 4 GiB,
`standard` between). Creating and deleting flavors is an admin's (Nova's policy).
"""
from __future__ import annotations

from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, Unsupported
from nbcloud.core.spec import Flavor

MIB, GIB = 1 << 20, 1 << 30
PERIOD = 100_000   # µs: the CFS period nbcloud uses on libvirt too


def family(vcpus: int, memory: int, share: float, ephemeral: int) -> str:
    """nbcloud's family word for a flavor of that shape."""
    if share < 1:
        return "shared"
    if ephemeral:
        return "storage"
    per_cpu = memory / max(vcpus, 1)
    return "highcpu" if per_cpu < 512 * MIB else "highmem" if per_cpu >= 4 * GIB else \
        "standard"


def share_of(specs: dict) -> float:
    """The CPU share Nova's extra specs give each vCPU (1.0: a whole one)."""
    try:
        quota, period = int(specs["quota:cpu_quota"]), int(specs["quota:cpu_period"])
    except (KeyError, TypeError, ValueError):
        return 1.0
    return min(1.0, quota / period) if quota > 0 and period > 0 else 1.0


def flavor_of(f) -> Flavor:
    """A Nova flavor as nbcloud's `Flavor`."""
    share = share_of(f.extra_specs or {})
    memory, ephemeral = int(f.ram) * MIB, int(f.ephemeral or 0) * GIB
    return Flavor(f.name, int(f.vcpus), memory, share, ephemeral,
                  family(int(f.vcpus), memory, share, ephemeral))


class FlavorMixin:
    """The flavor operations of `OpenStackProvider` (providers/base.py, Host, Flavors)."""

    def _nova_flavor(self, name: str):
        from openstack.exceptions import ResourceNotFound
        try:
            if not isinstance(name, str) or not name:
                raise ResourceNotFound(name)
            return self.conn.compute.find_flavor(name, ignore_missing=False)
        except ResourceNotFound:
            raise InvalidSpec(f"flavor {name!r} does not exist on {self.cloud}: see "
                              "`%cloud flavor list`") from None

    def flavor(self, name: str) -> Flavor:
        return flavor_of(self._nova_flavor(name))

    def flavors(self) -> list[Flavor]:
        return sorted((flavor_of(f) for f in self.conn.compute.flavors()),
                      key=lambda f: (f.family, f.vcpus, f.memory, f.name))

    def create_flavor(self, flavor: Flavor, root_disk: int) -> Flavor:
        """A public Nova flavor of that shape (admin only), its share as a CPU quota;
        `flavor` was checked by core.flavors.flavor_request."""
        if not self.has("flavors"):
            raise no_flavor_admin(self)
        if any(f.name == flavor.name for f in self.conn.compute.flavors(is_public=None)):
            raise AlreadyExists(f"flavor {flavor.name!r} exists already on {self.cloud}")
        try:
            made = self.conn.compute.create_flavor(
                name=flavor.name, vcpus=flavor.vcpus, ram=flavor.memory // MIB,
                disk=-(-root_disk // GIB), ephemeral=flavor.local_disk // GIB,
                is_public=True)
            if flavor.cpu_share < 1:
                try:
                    self.conn.compute.create_flavor_extra_specs(made, {
                        "quota:cpu_period": str(PERIOD),
                        "quota:cpu_quota": str(int(PERIOD * flavor.cpu_share))})
                except Exception:
                    self.conn.compute.delete_flavor(made, ignore_missing=True)
                    raise
        except Exception as exc:  # noqa: BLE001  (the API's reason, in one line)
            raise CloudError(f"Nova refused flavor {flavor.name!r}: "
                             f"{' '.join(str(exc).split())[:300]}") from None
        return self.flavor(flavor.name)

    def delete_flavor(self, name: str) -> None:
        if not self.has("flavors"):
            raise no_flavor_admin(self)
        f = self._nova_flavor(name)
        users = [s.name for s in self.conn.compute.servers(all_projects=True)
                 if (s.flavor or {}).get("original_name") == name]
        if users:
            raise CloudError(f"flavor {name!r} is used by {', '.join(sorted(users)[:5])}: "
                             "Nova would keep them running, but nbcloud refuses")
        self.conn.compute.delete_flavor(f, ignore_missing=True)


def no_flavor_admin(provider) -> Unsupported:
    """The one-line refusal for a user who may not make flavors."""
    return Unsupported(f"creating flavors on {provider.cloud} needs the admin role (you "
                       f"are {', '.join(provider.account[2]) or 'no role'})")

