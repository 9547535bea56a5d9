"""The libvirt provider: connection, XML builders, and the operations services use."""
