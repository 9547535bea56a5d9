"""Monitoring on OpenStack: Nova's server diagnostics, as the libvirt provider's records.

Each server's state comes from one listing; its counters (CPU time, disk and network
bytes) from `GET /servers/ID/diagnostics` (microversion 2.48), one call per watched running
server per tick, where this cloud's policy lets the user read them: Nova's default policy
gives them to admins only. A member's monitor keeps working on states alone, and
`stats_note()` says why the graphs are empty.
"""
from __future__ import annotations

from nbcloud.providers.openstack.compute import STATES


class StatsMixin:
    """The monitoring operations of `OpenStackProvider` (providers/base.py, Stats)."""

    _diagnostics: bool | None = None    # None: not asked yet; False: refused by policy

    def domain_stats(self, names=None) -> dict[str, dict]:
        wanted = None if names is None else set(names)
        out = {}
        for server in self.conn.compute.servers(details=True):
            if wanted is not None and server.name not in wanted:
                continue
            record = {"state": STATES.get(server.status, "unknown")}
            if record["state"] == "running" and self._diagnostics is not False:
                record.update(self._counters(server))
            out[server.name] = record
        return out

    def _counters(self, server) -> dict:
        """Nova's diagnostics as libvirt's flat record keys ({} where none can be read)."""
        from openstack.exceptions import ForbiddenException, SDKException
        try:
            diag = self.conn.compute.get_server_diagnostics(server)
        except ForbiddenException:
            self._diagnostics = False
            return {}
        except SDKException:
            return {}   # the server went away, or its host did not answer this tick
        self._diagnostics = True
        record: dict = {}
        cpus = diag.cpu_details or []
        if cpus and all(c.get("time") is not None for c in cpus):
            record["cpu.time"] = sum(c["time"] for c in cpus)    # ns
            record["vcpu.current"] = len(cpus)
        for prefix, rows, pairs in (("block", diag.disk_details or [],
                                     (("rd", "read_bytes"), ("wr", "write_bytes"))),
                                    ("net", diag.nic_details or [],
                                     (("rx", "rx_octets"), ("tx", "tx_octets")))):
            record[f"{prefix}.count"] = len(rows)
            for i, row in enumerate(rows):
                for what, key in pairs:
                    record[f"{prefix}.{i}.{what}.bytes"] = row.get(key)
        used = (diag.memory_details or {}).get("used")
        if used:   # MiB; 0 when the guest has no balloon driver to tell
            record["balloon.rss"] = used * 1024
        return record

    def stats_note(self) -> str:
        """Why the counters are missing, or '' when they are read."""
        roles = self.account[2]
        if self._diagnostics is False or (self._diagnostics is None and "admin" not in roles):
            return (f"{self.cloud}: counters come from Nova's server diagnostics, which this "
                    f"cloud gives to admins only (your roles: {', '.join(sorted(roles))}): "
                    "states only")
        return ""
