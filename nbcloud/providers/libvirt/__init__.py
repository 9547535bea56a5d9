"""libvirt backend: connection, XML builders, and the operations the API needs."""
from nbcloud.providers.libvirt.provider import LibvirtBackend  # noqa: F401
