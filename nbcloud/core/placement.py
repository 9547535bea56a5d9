"""Placement: which host of a cloud takes a new instance (or one that moves).

Pure: the caller gives each host's capacity and what is placed there already (its
instances' vCPUs and memory, and how many members of the new instance's group it holds);
`place` answers a host name or raises `NoCapacity` with one line saying what is short.

As Nova's scheduler does: a host offers its vCPUs times its CPU allocation ratio and its
memory times its RAM allocation ratio (overcommit the user sets per host); a host that is
down, drained or excluded takes nothing; `pin` names the only host allowed. Among the
hosts with room, members of one group (the instances of one `--count`, one instance pool,
one stack entry with a count) are spread: the host holding the fewest of them wins
(soft anti-affinity), then the one with the most free memory, then the most free vCPUs.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from nbcloud.core.errors import NoCapacity, NotFound

#: Nova's initial allocation ratios: 4 vCPUs per core, memory not overcommitted.
CPU_RATIO, RAM_RATIO = 4.0, 1.0


@dataclass(frozen=True)
class HostLoad:
    """One host as placement sees it."""
    name: str
    vcpus: int                 # the host's cores (threads)
    memory: int                # the host's memory, bytes
    used_vcpus: int = 0        # vCPUs of the instances placed there (running or not)
    used_memory: int = 0       # their memory, bytes
    cpu_ratio: float = CPU_RATIO
    ram_ratio: float = RAM_RATIO
    up: bool = True
    enabled: bool = True       # False: drained, takes no new instance
    members: int = 0           # instances of the request's group already there

    @property
    def cap_vcpus(self) -> int:
        return math.floor(self.vcpus * self.cpu_ratio + 1e-9)

    @property
    def cap_memory(self) -> int:
        return int(self.memory * self.ram_ratio)

    @property
    def free_vcpus(self) -> int:
        return self.cap_vcpus - self.used_vcpus

    @property
    def free_memory(self) -> int:
        return self.cap_memory - self.used_memory


def mib(nbytes: int) -> str:
    """Bytes as MiB or GiB, the way the refusal speaks of them."""
    if nbytes >= 1 << 30 and nbytes % (1 << 28) == 0:
        return f"{nbytes / (1 << 30):g} GiB"
    return f"{max(nbytes, 0) // (1 << 20)} MiB"


def why_not(h: HostLoad, vcpus: int, memory: int) -> str:
    """'' if host `h` can take an instance of this size, else why not (a few words)."""
    if not h.up:
        return "is down"
    if not h.enabled:
        return "is drained"
    short = []
    if h.free_vcpus < vcpus:
        short.append(f"{max(h.free_vcpus, 0)} of {h.cap_vcpus} vCPUs free")
    if h.free_memory < memory:
        short.append(f"{mib(h.free_memory)} of {mib(h.cap_memory)} memory free")
    return "has " + " and ".join(short) if short else ""


def place(name: str, vcpus: int, memory: int, hosts: Iterable[HostLoad], *,
          pin: str | None = None, exclude: Iterable[str] = ()) -> str:
    """The host that takes instance `name` of `vcpus` and `memory` bytes."""
    hosts = list(hosts)
    excluded = set(exclude)
    if pin is not None:
        if pin not in {h.name for h in hosts}:
            raise NotFound(f"host {pin!r} is not a host of this cloud (hosts: "
                           f"{', '.join(h.name for h in hosts)}; `%cloud host list`)")
        hosts = [h for h in hosts if h.name == pin]
    candidates = [h for h in hosts if h.name not in excluded]
    fits = [h for h in candidates if not why_not(h, vcpus, memory)]
    if fits:
        best = min(fits, key=lambda h: (h.members, -(h.free_memory - memory),
                                        -(h.free_vcpus - vcpus), hosts.index(h)))
        return best.name
    size = f"{vcpus} vCPU{'s' if vcpus != 1 else ''}, {mib(memory)}"
    reasons = "; ".join(f"{h.name} {why_not(h, vcpus, memory)}" for h in candidates)
    if not candidates:
        reasons = "no other host"
    where = f"host {pin} has no room" if pin else "no host has room"
    hint = ("start or add a host (`%cloud host add NAME URI`), delete an instance, or "
            "raise a host's allocation ratio (`--cpu-ratio`, `--ram-ratio`)")
    raise NoCapacity(f"{where} for {name} ({size}): {reasons}; {hint}")
