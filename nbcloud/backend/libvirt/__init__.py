"""libvirt backend: connection, XML builders, and the operations the API needs."""
from .backend import LibvirtBackend  # noqa: F401
