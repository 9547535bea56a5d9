"""What a test reads inside a tiny guest, with the busybox it has."""
from __future__ import annotations


def udp_noports(inst) -> int:
    """The guest kernel's count of datagrams for a port nobody listens on (/proc/net/snmp
    Udp NoPorts): how a test sees UDP arrive, the tiny image having no UDP server."""
    head, values = inst.ssh("grep ^Udp: /proc/net/snmp").splitlines()[:2]
    return int(dict(zip(head.split()[1:], values.split()[1:]))["NoPorts"])
