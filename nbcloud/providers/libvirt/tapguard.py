"""A warm clone's anti-spoofing in one nftables transaction instead of libvirt's nwfilter.

libvirt instantiates a NIC's `<filterref>` by forking ebtables, iptables and ip6tables
from its daemon, 56 programs per NIC here (~0.35 s of a clone's ~1.3 s, measured with
`strace -f -e execve` on libvirtd). For the first run of a clone in no security group,
whose filter is plain `nbcloud-antispoof` with a known address, nbcloud instead creates
the clone's tap under a name of its own (`nbc` + 12 hex digits of its UUID), without a
`<filterref>`, and, while the clone is still paused with no state loaded, adds the same
checks for that tap to table `bridge nbcloud`:

    frames from the guest with another source MAC          drop
    IPv4 DHCP discover/request (0.0.0.0 -> broadcast)       accept
    IPv4 from its own address                               accept
    any other IPv4                                          drop
    ARP with another sender MAC                             drop
    ARP for its own address, or a probe (sender 0.0.0.0)    accept
    any other ARP                                           drop

(`accept` ends this table's verdict only: libvirt's ebtables tables still see the frame,
as after a `return` in the nwfilter.) The tap's rules live in chain `c_TAP`, reached
through verdict map `taps` (tap name -> jump) from one prerouting chain, so adding and
removing a tap are element operations, never a rule handle. Every change runs under one
file lock across processes and removes the entries of taps that no longer exist (a
clone stopped from inside, then started cold: libvirt's filter, a `vnetN` tap).

Everything here runs in the calling process's network namespace: the caller checks the
tap is visible there (`visible`) before trusting rules made here to guard it.
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from contextlib import contextmanager

PREFIX = "nbc"
TABLE = "nbcloud"
LOCK = "/run/lock/nbcloud-tapguard.lock"
_TAP = re.compile(r"^nbc[0-9a-f]{12}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class GuardError(Exception):
    """nftables refused, or is not there: the clone gets libvirt's filter instead."""


def tap_name(uuid: str) -> str:
    """The tap of a guarded clone with UUID `uuid` (15 characters, the kernel's limit)."""
    return PREFIX + uuid.replace("-", "").lower()[:12]


def is_guarded_tap(dev: str) -> bool:
    return bool(_TAP.match(dev or ""))


def taps_in(domain_xml: str) -> list[str]:
    """The guarded taps of a running domain, from its live XML."""
    return [t.get("dev", "") for t in ET.fromstring(domain_xml).iterfind(
        "devices/interface/target") if is_guarded_tap(t.get("dev", ""))]


def usable() -> bool:
    """Whether this process can guard taps: root, with the nft program."""
    return os.geteuid() == 0 and shutil.which("nft") is not None


def visible(dev: str) -> bool:
    """Whether interface `dev` exists in this process's network namespace."""
    try:
        socket.if_nametoindex(dev)
    except OSError:
        return False
    return True


def _checked(tap: str, mac: str, ip: str) -> tuple[str, str, str]:
    if not is_guarded_tap(tap):
        raise GuardError(f"not a guarded tap name: {tap!r}")
    mac = mac.lower()
    if not _MAC.match(mac):
        raise GuardError(f"not a MAC address: {mac!r}")
    try:
        ip = str(ipaddress.IPv4Address(ip))
    except ValueError:
        raise GuardError(f"not an IPv4 address: {ip!r}") from None
    return tap, mac, ip


def guard_script(tap: str, mac: str, ip: str, stale: list[str] = ()) -> str:
    """The nft transaction that guards `tap` (MAC `mac`, address `ip`) and forgets the
    taps in `stale`; the table it goes into is `_TABLE_SCRIPT`'s, made once (its base
    chain's one rule would be added again by a second run)."""
    tap, mac, ip = _checked(tap, mac, ip)
    chain = f"c_{tap}"
    lines = [f"add chain bridge {TABLE} {chain}", f"flush chain bridge {TABLE} {chain}"]
    lines += [f"add rule bridge {TABLE} {chain} {rule}" for rule in (
        f"ether saddr != {mac} drop",
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
        f"ip saddr {ip} accept",
        "ether type ip drop",
        f"arp saddr ether != {mac} drop",
        f"arp saddr ip {ip} accept",
        "arp saddr ip 0.0.0.0 accept",
        "ether type arp drop",
    )]
    lines.append(f'add element bridge {TABLE} taps {{ "{tap}" : jump {chain} }}')
    return "\n".join(_forget_lines(stale) + lines) + "\n"


def _forget_lines(taps) -> list[str]:
    out = []
    for tap in taps:
        if is_guarded_tap(tap):
            out += [f'delete element bridge {TABLE} taps {{ "{tap}" }}',
                    f"delete chain bridge {TABLE} c_{tap}"]
    return out


_TABLE_SCRIPT = f"""add table bridge {TABLE}
add map bridge {TABLE} taps {{ type ifname : verdict; }}
add chain bridge {TABLE} prerouting {{ type filter hook prerouting priority -300; policy accept; }}
add rule bridge {TABLE} prerouting iifname vmap @taps
"""


def _nft(args: list[str], script: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["nft", *args], input=script, capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GuardError(f"nft did not run: {exc}") from None


@contextmanager
def _locked():
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def guarded() -> dict[str, str]:
    """tap -> its chain, as table `bridge nbcloud` has them now ({} without the table)."""
    return _taps_map() or {}


def _taps_map() -> dict[str, str] | None:
    """`guarded()`, or None where there is no table yet."""
    r = _nft(["-j", "list", "map", "bridge", TABLE, "taps"])
    if r.returncode != 0:
        return None
    out = {}
    for item in json.loads(r.stdout).get("nftables", []):
        for elem in item.get("map", {}).get("elem", []) or []:
            key, verdict = elem if isinstance(elem, list) else (None, None)
            if isinstance(key, str) and isinstance(verdict, dict):
                out[key] = verdict.get("jump", {}).get("target", "")
    return out


def rules_of(tap: str) -> str:
    """The text of tap `tap`'s chain ('' if it has none): for tests."""
    if not is_guarded_tap(tap):
        return ""
    r = _nft(["list", "chain", "bridge", TABLE, f"c_{tap}"])
    return r.stdout if r.returncode == 0 else ""


def guard(tap: str, mac: str, ip: str) -> None:
    """Guard `tap` (see the module), forgetting the entries of taps gone meanwhile.
    GuardError if nft refused: then nothing changed."""
    _checked(tap, mac, ip)
    with _locked():
        have = _taps_map()
        if have is None:
            have = {}
            made = _nft(["-f", "-"], _TABLE_SCRIPT)
            if made.returncode != 0:
                raise GuardError(f"nft refused table bridge {TABLE}: "
                                 f"{made.stderr.strip()[:200]}")
        stale = [t for t in have if t != tap and not visible(t)]
        r = _nft(["-f", "-"], guard_script(tap, mac, ip, stale))
        if r.returncode != 0:
            raise GuardError(f"nft refused the rules of {tap}: {r.stderr.strip()[:200]}")


def forget(*taps: str) -> None:
    """Drop the rules of `taps` (a guarded clone stopped or deleted) and of any other
    tap gone; never raises. A tap that still exists keeps its rules: they are all that
    guards it."""
    if not any(is_guarded_tap(t) for t in taps) or not usable():
        return
    try:
        with _locked():
            gone = [t for t in guarded() if not visible(t)]
            if gone:
                _nft(["-f", "-"], "\n".join(_forget_lines(gone)) + "\n")
    except (GuardError, OSError):
        pass
