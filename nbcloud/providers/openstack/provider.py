"""OpenStackProvider: nbcloud's verbs on a real OpenStack cloud, through openstacksdk.

`openstack://CLOUD` names a cloud of the user's `clouds.yaml` (as `openstack --os-cloud
CLOUD` does). Everything nbcloud makes there carries its mark: the tag `nbcloud` on
Neutron objects, metadata `nbcloud:kind` on servers and volumes, so that what nbcloud did
not make is never touched. A cloud's rows in the inventory are keyed by cloud and project
(`openstack://CLOUD/PROJECT_ID`), so one notebook can hold a libvirt host and a cloud.

Its operations live in one mixin per kind: compute.py (Nova servers), flavors.py,
keypairs.py (Nova's), projects.py (Keystone's, for a class), networks.py
(Neutron networks, routers, ports), stats.py (Nova's diagnostics), volumes.py (Cinder), firewall.py (security groups),
forwards.py (floating IPs), images.py (Glance).
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from nbcloud.core import config
from nbcloud.core.errors import HostError
from nbcloud.providers.base import PlacesItself, Provider
from nbcloud.providers.openstack.compute import (
    ComputeMixin,
    NoAdoption,
    NoBalancers,
    NoClones,
    NoStoragePools,
)
from nbcloud.providers.openstack.firewall import FirewallMixin
from nbcloud.providers.openstack.flavors import FlavorMixin
from nbcloud.providers.openstack.keypairs import KeyPairMixin
from nbcloud.providers.openstack.forwards import ForwardMixin
from nbcloud.providers.openstack.networks import NetworkMixin
from nbcloud.providers.openstack.projects import ProjectMixin
from nbcloud.providers.openstack.stats import StatsMixin
from nbcloud.providers.openstack.volumes import VolumeMixin

_CLOUD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: Catalog service type -> the capabilities it brings (beside compute's own).
_SERVICES = {"network": {"networks", "secgroups", "floating"},
             "block-storage": {"volumes"}, "volumev3": {"volumes"}}


def cloud_name(uri: str) -> str:
    """`openstack://CLOUD` -> CLOUD, checked (a clouds.yaml entry name)."""
    parts = urlsplit(uri)
    name = parts.netloc or parts.path.strip("/")
    if parts.scheme != "openstack" or not _CLOUD.fullmatch(name or "") or \
            parts.path.strip("/") not in ("", name):
        raise HostError(f"{uri!r} is not an OpenStack URI: use openstack://CLOUD, CLOUD "
                        "being a cloud of your clouds.yaml (letters, digits, '.', '_', '-')")
    return name


class OpenStackProvider(Provider, ComputeMixin, FlavorMixin, KeyPairMixin, NetworkMixin,
                        ProjectMixin, VolumeMixin, FirewallMixin, ForwardMixin, StatsMixin,
                        NoAdoption, NoBalancers, NoStoragePools, NoClones,
                        PlacesItself):
    """A connection to one OpenStack cloud (one project) and the operations on it."""

    name = "openstack"

    def __init__(self, uri: str):
        try:
            import openstack
            from openstack import exceptions
        except ImportError:
            raise HostError("the OpenStack provider needs openstacksdk: `pip install "
                            "openstacksdk` (or `pip install nbcloud[openstack]`)") from None
        self.uri = uri
        self.cloud = cloud_name(uri)
        self.paths = {"logs": config.home() / "console"}
        self.is_test_driver = False
        try:
            self.conn = openstack.connect(cloud=self.cloud)
            self.project_id = self.conn.current_project_id
        except exceptions.ConfigException as exc:
            raise HostError(f"no cloud {self.cloud!r} in clouds.yaml ({exc}): add it to "
                            "~/.config/openstack/clouds.yaml or set "
                            "OS_CLIENT_CONFIG_FILE") from None
        except exceptions.SDKException as exc:
            raise HostError(f"cannot reach OpenStack cloud {self.cloud!r}: "
                            f"{_one_line(exc)}") from None
        access = self.conn.session.auth.get_access(self.conn.session)
        self.catalog = sorted({e["type"] for e in (access.service_catalog.catalog or [])})
        self.account = (access.username, access.project_name, tuple(access.role_names))
        caps = {"compute", "console", "snapshots", "stats"}
        for kind, more in _SERVICES.items():
            if kind in self.catalog:
                caps |= more
        if "admin" in self.account[2]:
            caps |= {"flavors", "projects"}
        self.capabilities = frozenset(caps)   # per cloud: what its catalog offers
        self._images = None

    @property
    def inventory_key(self) -> str:
        return f"openstack://{self.cloud}/{self.project_id}"

    def prepare(self) -> None:
        """nbcloud's default network, behind a router to the external network, so that
        `instance create` without --network works as on a libvirt host."""
        if "networks" in self.capabilities:
            self.ensure_default_network()

    @property
    def images(self):
        """The image store: Glance."""
        if self._images is None:
            from nbcloud.providers.openstack.images import GlanceImages
            self._images = GlanceImages(self)
        return self._images

    def versions(self) -> dict[str, str]:
        import openstack
        user, project, roles = self.account
        return {"openstacksdk": getattr(openstack, "__version__", "?"),
                "cloud": f"{self.cloud} (compute API {self.conn.compute.get_endpoint()})",
                "account": f"user {user} in project {project} (roles: "
                           f"{', '.join(sorted(roles)) or 'none'})",
                "services": ", ".join(self.catalog), "uri": self.uri}

    def capacity(self) -> tuple[int, int]:
        """The most vCPUs and memory (bytes) this project may have: Nova's absolute limits
        (a cloud places servers itself; its hosts are not a member's to see)."""
        absolute = self.conn.compute.get_limits().absolute
        cores, ram = absolute.total_cores, absolute.total_ram    # -1: no limit
        unlimited = 1 << 20
        return (cores if cores and cores > 0 else unlimited,
                (ram if ram and ram > 0 else unlimited) << 20)

    def accelerator(self, probe: bool = True) -> dict:
        return {"accelerator": "openstack",
                "reason": "the cloud places its servers on its compute hosts and picks "
                          "their accelerator; a project member cannot see which"}

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001  (closing a session that is gone already)
            pass


def _one_line(exc: BaseException) -> str:
    """An SDK error as one line (they carry the HTTP body, often several lines)."""
    text = " ".join(str(exc).split())
    return text[:300]

