"""Providers: the only code that talks to a cloud engine (DESIGN.md, Layers).

`open_provider(uri)` picks the engine from the URI and imports it only then, so nothing
above this layer imports an engine's library.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbcloud.providers.base import Provider


def open_provider(uri: str) -> Provider:
    """A connected provider for `uri`: openstack://CLOUD (a cloud of clouds.yaml), or a
    libvirt URI (qemu:///system, qemu:///session, qemu+ssh://..., test:///default), the
    home host of a cloud that may have more (`add_host`)."""
    if uri.startswith("openstack:"):
        from nbcloud.providers.openstack.provider import OpenStackProvider
        return OpenStackProvider(uri)
    from nbcloud.providers.libvirt.cloud import LibvirtCloud
    return LibvirtCloud(uri)
