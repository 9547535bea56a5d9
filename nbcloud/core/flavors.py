"""The flavor catalogue: instance types after the common public-cloud families.

Sizes are scaled for a teaching host (a laptop or a 2-core CI box): a `nano` is what a
tiny guest needs, an `xlarge` is what a real distribution is comfortable with.
"""
from __future__ import annotations

import re

from nbcloud.core.spec import Flavor, InvalidSpec, check_count, parse_size

SIZES = ("nano", "micro", "small", "medium", "large", "xlarge")
M = 1 << 20

# family prefix -> (family, [(vcpus, memory MiB, cpu_share, local disk MiB) per size])
_TABLE: dict[str, tuple[str, list[tuple[int, int, float, int]]]] = {
    "t": ("shared", [(1, 128, 0.25, 0), (1, 256, 0.25, 0), (1, 512, 0.5, 0),
                     (2, 1024, 0.5, 0), (2, 2048, 0.5, 0), (4, 4096, 0.5, 0)]),
    "m": ("standard", [(1, 256, 1, 0), (1, 512, 1, 0), (1, 1024, 1, 0),
                       (2, 2048, 1, 0), (2, 4096, 1, 0), (4, 8192, 1, 0)]),
    "c": ("highcpu", [(1, 128, 1, 0), (2, 256, 1, 0), (2, 512, 1, 0),
                      (4, 1024, 1, 0), (4, 2048, 1, 0), (8, 4096, 1, 0)]),
    "r": ("highmem", [(1, 512, 1, 0), (1, 1024, 1, 0), (1, 2048, 1, 0),
                      (2, 4096, 1, 0), (2, 8192, 1, 0), (4, 16384, 1, 0)]),
    "d": ("storage", [(1, 256, 1, 1024), (1, 512, 1, 2048), (1, 1024, 1, 4096),
                      (2, 2048, 1, 8192), (2, 4096, 1, 16384), (4, 8192, 1, 32768)]),
}

CATALOGUE: dict[str, Flavor] = {
    f"{prefix}.{size}": Flavor(f"{prefix}.{size}", vcpus, mem * M, share, disk * M, family)
    for prefix, (family, rows) in _TABLE.items()
    for size, (vcpus, mem, share, disk) in zip(SIZES, rows)
}


#: a custom machine type's name, as GCE spells them: custom-VCPUS-MEMORY_MIB
_CUSTOM_RE = re.compile(r"custom-([0-9]{1,2})-([0-9]{2,7})")
CUSTOM_MIN_MEMORY = 64 * M
CUSTOM_MAX_VCPUS = 64


def get_flavor(name: str) -> Flavor:
    """The catalogue flavor `name`, a custom one (`custom-2-1024`), or InvalidSpec
    listing the families."""
    try:
        return CATALOGUE[name]
    except (KeyError, TypeError):
        pass
    m = _CUSTOM_RE.fullmatch(name) if isinstance(name, str) else None
    if m:
        return custom_flavor(m.group(1), f"{m.group(2)}M")
    raise InvalidSpec(f"flavor {name!r} does not exist: use FAMILY.SIZE with family "
                      f"t, m, c, r or d and size {', '.join(SIZES)} (like t.nano), "
                      "or --vcpus/--memory")


def custom_flavor(vcpus: object, memory: object) -> Flavor:
    """A flavor of the user's own size (`--vcpus 2 --memory 1G`), named as a GCE custom
    machine type: `custom-2-1024` (vCPUs, then MiB). Whole CPUs, no share cap."""
    n = check_count(vcpus, "vcpus", maximum=CUSTOM_MAX_VCPUS)
    mem = parse_size(memory, "memory")
    if mem < CUSTOM_MIN_MEMORY:
        raise InvalidSpec(f"memory {memory!r} is too small: use at least 64M")
    if mem % M:
        raise InvalidSpec(f"memory {memory!r} is not a whole number of MiB: use M or G, "
                          "like 768M or 2G")
    return Flavor(f"custom-{n}-{mem // M}", n, mem, 1.0, 0, "custom")


def check_flavor_name(name: object) -> str:
    """`name` if it may name a flavor: a lowercase letter, then up to 62 lowercase
    letters, digits, '.' or '-' (t.nano); else InvalidSpec."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9.-]{0,62}", name):
        shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "...'"
        raise InvalidSpec(f"flavor name {shown} is not allowed: a lowercase letter, then "
                          "up to 62 lowercase letters, digits, '.' or '-'")
    return name


def flavor_request(name: object, vcpus: object, memory: object, *, share: object = 1.0,
                   ephemeral: object = 0) -> Flavor:
    """A new flavor for a cloud's catalogue (`%cloud flavor create`), checked: a name of
    lowercase letters, digits, '.' and '-'; a CPU share above 0 and at most 1."""
    check_flavor_name(name)
    base = custom_flavor(vcpus, memory)
    try:
        cpu = float(share)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        cpu = 0.0
    if not 0 < cpu <= 1:
        raise InvalidSpec(f"share {share!r} is not allowed: a fraction of each vCPU above 0 "
                          "and at most 1 (like 0.25)")
    disk = 0 if ephemeral in (0, "0", None) else parse_size(ephemeral, "ephemeral disk")
    return Flavor(name, base.vcpus, base.memory, cpu, disk, "")


def choose(flavor: str | None, vcpus: object = None, memory: object = None) -> str:
    """The flavor name for `--flavor F` or `--vcpus N --memory M` (t.nano when neither);
    a named flavor is the provider's to know (a cloud has its own catalogue)."""
    if vcpus is None and memory is None:
        return flavor or "t.nano"
    if flavor is not None:
        raise InvalidSpec("give either a flavor or --vcpus/--memory, not both")
    if vcpus is None or memory is None:
        raise InvalidSpec("a custom instance type needs both --vcpus and --memory "
                          "(like --vcpus 2 --memory 1G)")
    return custom_flavor(vcpus, memory).name


def check_fits(flavor: Flavor, host_vcpus: int, host_memory: int) -> None:
    """A custom flavor no larger than the host: a guest cannot have more CPUs or memory
    than the machine it runs on (catalogue flavors are the cloud's own offer)."""
    if flavor.family != "custom":
        return
    if flavor.vcpus > host_vcpus:
        raise InvalidSpec(f"--vcpus {flavor.vcpus} is more than this host has: use at "
                          f"most {host_vcpus}")
    if flavor.memory > host_memory:
        raise InvalidSpec(f"--memory {flavor.memory // M}M is more than this host has: "
                          f"use at most {host_memory // M}M")
