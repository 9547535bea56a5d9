"""Desired resources as dataclasses, validated at the edge.

Every check raises `InvalidSpec` with one sentence naming the field and what is allowed.
It imports only the errors, so it stays the shared vocabulary of all layers.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import PurePath

from nbcloud.core.errors import InvalidSpec

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_SIZE_RE = re.compile(r"^(\d+)\s*([KMGT]?)i?B?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
USER_DATA_MAX = 16 * 1024  # bytes of a user's user-data: what EC2 and most clouds accept
USER_NETWORK = "user"      # QEMU's user-mode networking: no bridge, SSH by a loopback port
POOL_MAX_SIZE = 32         # members of one instance pool


def check_name(value: object, what: str = "name") -> str:
    """Return `value` if it is an allowed resource name, else raise InvalidSpec."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "...'"
        raise InvalidSpec(
            f"{what} {shown} is not allowed: use 1-63 characters, lower-case letters, "
            "digits and '-', starting with a letter")
    return value


def check_path(value: str | PurePath, what: str = "path") -> str:
    """`value` if it has no `..` component (the one rule for every path a user names:
    image sources, pool folders, synced folders, key files); else InvalidSpec."""
    if ".." in PurePath(value).parts:
        raise InvalidSpec(f"{what} {str(value)!r}: give the path without '..' (an absolute "
                          "path works)")
    return str(value)


def sync_tag(index: int) -> str:
    """The virtiofs tag of an instance's `index`-th synced folder (device and mount)."""
    return f"nbsync{index}"


def parse_size(value: object, what: str = "size") -> int:
    """'512M', '2G', '1024' (bytes) or an int -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _SIZE_RE.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if not m or int(m.group(1)) == 0:
        raise InvalidSpec(f"{what} {value!r} is not a size: use a positive number with "
                          "an optional unit K, M, G or T, like 512M or 2G")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def format_size(nbytes: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if nbytes >= _UNITS[unit] and nbytes % _UNITS[unit] == 0:
            return f"{nbytes // _UNITS[unit]}{unit}"
    return str(nbytes)


# Ranges no network may use: the host routes or answers them itself, or they are no
# unicast addresses at all.
SPECIAL_RANGES = tuple((ipaddress.IPv4Network(net), why) for net, why in (
    ("0.0.0.0/8", "'this network', which no host may be in"),
    ("127.0.0.0/8", "loopback, the host's own services"),
    ("169.254.0.0/16", "link-local, where cloud metadata services answer"),
    ("224.0.0.0/4", "multicast, not one address per host"),
    ("240.0.0.0/4", "reserved (and the broadcast address)"),
))
# The largest network: libvirt refuses a DHCP range of more than 65,535 addresses, and
# DHCP serves the upper half of a network.
MIN_PREFIX, MAX_PREFIX = 16, 29


def parse_cidr(value: object, what: str = "cidr") -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(str(value), strict=True)
    except ValueError:
        raise InvalidSpec(f"{what} {value!r} is not an IPv4 network: use the form "
                          f"10.80.0.0/24 (host bits zero, prefix /{MIN_PREFIX}-"
                          f"/{MAX_PREFIX})") from None
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        raise InvalidSpec(f"{what} {value!r} has prefix /{net.prefixlen}: use a prefix "
                          f"between /{MIN_PREFIX} and /{MAX_PREFIX} (libvirt serves DHCP "
                          "to at most a /16)")
    for special, why in SPECIAL_RANGES:
        if net.overlaps(special):
            raise InvalidSpec(f"{what} {net} is in {special}, {why}: pick a private "
                              "range like 10.80.0.0/24")
    return net


def check_port(value: object, what: str = "port") -> int:
    """A TCP/UDP port number 1-65535, given as an int or its decimal text."""
    try:
        port = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        port = 0
    if isinstance(value, bool) or not 1 <= port <= 65535 or str(port) != str(value).strip():
        raise InvalidSpec(f"{what} {value!r} is not allowed: use a whole number from 1 to 65535")
    return port


def check_count(value: object, what: str = "count", maximum: int = 64) -> int:
    try:
        n = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or not 1 <= n <= maximum or str(n) != str(value).strip():
        raise InvalidSpec(f"{what} {value!r} is not allowed: use a whole number "
                          f"from 1 to {maximum}")
    return n


#: How an instance may come up: a warm clone where it can be, a cold boot, or a clone.
BOOTS = ("auto", "cold", "clone")


@dataclass(frozen=True)
class Flavor:
    """An instance type: vCPUs, memory, CPU share, extra local disk."""
    name: str
    vcpus: int
    memory: int                 # bytes
    cpu_share: float = 1.0      # fraction of each vCPU (shared-CPU flavors < 1)
    local_disk: int = 0         # bytes of extra local disk (storage flavors)
    family: str = "standard"


@dataclass(frozen=True)
class InstanceSpec:
    """What `instance create` asks for, validated."""
    name: str
    image: str = "tiny"
    flavor: str = "t.nano"
    networks: tuple[str, ...] = ("nbcloud",)
    user_data: str | None = None
    key: str | None = None
    screen: bool = False          # a VGA adapter, for screenshots (costs boot time)
    sync: tuple[tuple[str, str], ...] = ()  # (host folder, guest folder): synced.py checks
    boot: str = "auto"            # auto: a warm clone where it can be; cold; clone
    host: str | None = None       # the host it must go to (several hosts: placement's pin)
    group: str | None = None      # members of one group are spread over hosts

    def __post_init__(self) -> None:
        check_name(self.name, "instance name")
        for value, what in ((self.host, "host name"), (self.group, "group name")):
            if value is not None:
                check_name(value, what)
        if self.boot not in BOOTS:
            raise InvalidSpec(f"boot {self.boot!r} is not allowed: auto (a warm clone where "
                              "it can be, else a cold boot), cold or clone")
        check_name(self.image, "image name")
        if not isinstance(self.flavor, str) or not re.fullmatch(r"[a-z][a-z0-9.-]{0,62}",
                                                                self.flavor):
            raise InvalidSpec(f"flavor {self.flavor!r} is not a flavor name: see "
                              "`%cloud flavor list`")
        if not self.networks:
            raise InvalidSpec("networks is empty: name at least one network")
        for net in self.networks:
            check_name(net, "network name")
        if self.key is not None:
            check_name(self.key, "key name")
        if self.user_data is not None and not (
                isinstance(self.user_data, str)
                and self.user_data.lstrip().startswith(("#!", "#cloud-config"))):
            raise InvalidSpec("user-data must start with '#!' (a script) or "
                              "'#cloud-config'")
        if self.user_data is not None:
            check_user_data_size(self.user_data)


def check_user_data_size(text: str) -> int:
    """The size of user-data `text` in bytes; InvalidSpec over USER_DATA_MAX or not text."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidSpec("user-data is not valid text (it holds a lone UTF-16 "
                          "surrogate)") from None
    if size > USER_DATA_MAX:
        raise InvalidSpec(f"user-data is {size} bytes: at most {USER_DATA_MAX} are allowed "
                          "(as on EC2); put larger files on a volume or a cdrom")
    return size


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    cidr: str
    mode: str = "nat"
    modes: tuple[str, ...] = field(default=("nat", "isolated", "routed", "open"), repr=False)

    def __post_init__(self) -> None:
        check_name(self.name, "network name")
        parse_cidr(self.cidr)
        if self.mode not in self.modes:
            raise InvalidSpec(f"mode {self.mode!r} is not a network mode: use one of "
                              + ", ".join(self.modes))

    @property
    def network(self) -> ipaddress.IPv4Network:
        return parse_cidr(self.cidr)


@dataclass(frozen=True)
class PoolSpec:
    name: str
    path: str

    def __post_init__(self) -> None:
        check_name(self.name, "pool name")
        check_path(self.path, "path")
        if not self.path.startswith("/"):
            raise InvalidSpec(f"path {self.path!r} is not allowed: use an absolute path "
                              "without '..'")


TIERS = ("ssd", "hdd")


@dataclass(frozen=True)
class VolumeSpec:
    """What `volume create` asks for, validated: a qcow2 data volume of a tier."""
    name: str
    size: int | str
    tier: str = "ssd"

    def __post_init__(self) -> None:
        check_name(self.name, "volume name")
        parse_size(self.size, "size")
        if self.tier not in TIERS:
            raise InvalidSpec(f"tier {self.tier!r} is not a volume tier: use one of "
                              + ", ".join(TIERS))

    @property
    def capacity(self) -> int:
        return parse_size(self.size, "size")
