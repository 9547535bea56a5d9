"""Devices of a domain that come and go: data volumes and cdroms, attached and detached."""
from __future__ import annotations

import libvirt


class DeviceMixin:
    conn: libvirt.virConnect
