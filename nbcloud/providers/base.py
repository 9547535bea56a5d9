"""The provider seam: what a cloud engine must offer nbcloud's services.

A provider is one object with a `name`, the `uri` it serves and the `capabilities` it
has. Services call its methods (grouped below by capability, as the interfaces each
provider implements); a capability a provider lacks answers, through `require`, with one
line naming the provider and what it lacks. The libvirt provider (providers/libvirt/)
implements every group; another engine implements what it can and says so.
"""
from __future__ import annotations

from typing import ClassVar

from nbcloud.core.errors import Unsupported

#: Every capability a service may ask for, with the words its refusal uses.
CAPABILITIES = {
    "compute": "instances",
    "volumes": "volumes",
    "cdroms": "cdroms",
    "storage-pools": "storage pools (the cloud places volumes itself)",
    "networks": "networks",
    "secgroups": "security groups",
    "floating": "floating addresses",
    "loadbalancers": "load balancers",
    "dns": "DNS records",
    "folders": "synced folders",
    "snapshots": "instance snapshots",
    "screenshots": "screenshots",
    "console": "a console log",
    "stats": "monitoring statistics",
    "adopt": "adopting objects made outside nbcloud",
}


class Provider:
    """The base of every provider: its identity and its capabilities."""

    name: ClassVar[str] = "base"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    uri: str

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def require(self, capability: str) -> None:
        """Refuse, in one line, what this provider cannot do."""
        if capability not in self.capabilities:
            raise Unsupported(f"the {self.name} provider ({self.uri}) has no "
                              f"{CAPABILITIES.get(capability, capability)}")

    def close(self) -> None:
        """Release the connection to the engine."""
