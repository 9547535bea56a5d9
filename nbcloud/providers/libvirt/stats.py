"""Domain statistics for the monitor: one bulk call per tick."""
from __future__ import annotations

from collections.abc import Iterable

import libvirt

from nbcloud.providers.libvirt.domains import _STATES

# cpu-total, balloon, vcpu, interface and block groups, and the state (to see changes)
_GROUPS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
           | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU
           | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BLOCK)
# A domain busy with a job (a snapshot, a migration) reports what it can at once instead
# of holding the sampler until the job ends.
_NOWAIT = getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)


class StatsMixin:
    conn: libvirt.virConnect

    def domain_stats(self, names: Iterable[str] | None = None) -> dict[str, dict]:
        """name -> libvirt's flat stats record (`cpu.time`, `balloon.rss`, `vcpu.current`,
        `net.N.rx.bytes`, `block.N.wr.bytes`, ...) of the domains `names` (every domain
        when None) from ONE bulk call; `state` is nbcloud's word for the domain state.
        A stopped domain has only its state; a counter libvirt could not read is absent;
        a name with no domain is left out.

        With names, only those domains are asked (virDomainListGetAllDomainStats): on a
        shared host the daemon does not query other people's guests every tick."""
        if names is None:
            records = self._bulk(lambda flags: self.conn.getAllDomainStats(_GROUPS, flags))
        else:
            wanted = list(names)
            try:
                records = self._listed(wanted)
            except libvirt.libvirtError:
                # a domain went away (or was redefined) since its handle was taken
                self._stat_handles().clear()
                records = self._listed(wanted)
        out = {}
        for dom, record in records:
            record["state"] = _STATES.get(record.pop("state.state", -1), "unknown")
            out[dom.name()] = record
        return out

    def stats_note(self) -> str:
        return ""   # libvirt reads every counter

    def _listed(self, names: list[str]) -> list:
        handles = self._stat_handles()
        doms = []
        for name in names:
            if name not in handles:
                try:
                    handles[name] = self.conn.lookupByName(name)
                except libvirt.libvirtError:
                    continue   # not defined (now): no record
            doms.append(handles[name])
        if not doms:
            return []
        return self._bulk(lambda flags: self.conn.domainListGetStats(doms, _GROUPS, flags))

    def _stat_handles(self) -> dict[str, libvirt.virDomain]:
        # domain handles kept between ticks: a lookup per name per tick would be one more
        # daemon round trip each
        if not hasattr(self, "_stats_handles"):
            self._stats_handles: dict[str, libvirt.virDomain] = {}
        return self._stats_handles

    @staticmethod
    def _bulk(call) -> list:
        try:
            return call(_NOWAIT)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                raise
            return call(0)   # a driver without the NOWAIT flag
