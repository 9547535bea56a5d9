"""Security group rules: the model, its validation and its text form (no libvirt here, so
the stack model can check a cell's rules)."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass

from nbcloud.core.spec import InvalidSpec, check_name

PROTOCOLS = ("tcp", "udp", "icmp", "all")


@dataclass(frozen=True)
class Rule:
    """One rule of a group. `ports` is (low, high) or None for every port."""
    id: int
    direction: str = "ingress"          # ingress (to the instance) | egress
    proto: str = "tcp"
    ports: tuple[int, int] | None = None
    cidr: str | None = None             # remote network; None and no group: anywhere
    group: str | None = None            # remote = the members of this group

    def describe(self) -> str:
        port = "" if self.ports is None else (
            f" port {self.ports[0]}" if self.ports[0] == self.ports[1]
            else f" ports {self.ports[0]}-{self.ports[1]}")
        where = f"group {self.group}" if self.group else (self.cidr or "anywhere")
        side = "from" if self.direction == "ingress" else "to"
        return f"{self.direction} {self.proto}{port} {side} {where}"

    def to_json(self) -> dict:
        d = asdict(self)
        d["ports"] = list(self.ports) if self.ports else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> Rule:
        ports = tuple(d["ports"]) if d.get("ports") else None
        return cls(d["id"], d.get("direction", "ingress"), d.get("proto", "tcp"),
                   ports, d.get("cidr"), d.get("group"))  # type: ignore[arg-type]


def parse_ports(value: object) -> tuple[int, int] | None:
    """'22', '8000-8080', 22 or None -> (low, high); anything else is InvalidSpec."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    low, sep, high = text.partition("-")
    try:
        lo, hi = int(low), int(high if sep else low)
    except ValueError:
        lo = hi = -1
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535) or lo > hi:
        raise InvalidSpec(f"port {value!r} is not allowed: use a port 1-65535 or a range "
                          "LOW-HIGH like 8000-8080")
    return lo, hi


def make_rule(rule_id: int, *, proto: str = "tcp", port: object = None,
              source: str | None = None, source_group: str | None = None,
              egress: bool = False) -> Rule:
    """Validate the parts of a rule as the user gave them; return the Rule."""
    if proto not in PROTOCOLS:
        raise InvalidSpec(f"protocol {proto!r} is not allowed: use one of "
                          f"{', '.join(PROTOCOLS)}")
    ports = parse_ports(port)
    if ports and proto not in ("tcp", "udp"):
        raise InvalidSpec(f"a port applies to tcp and udp only, not to {proto}")
    if source and source_group:
        raise InvalidSpec("give --source CIDR or --source-group GROUP, not both")
    cidr = None
    if source:
        try:
            cidr = str(ipaddress.IPv4Network(source, strict=False))
        except ValueError:
            raise InvalidSpec(f"source {source!r} is not an IPv4 address or network: use "
                              "the form 10.0.0.0/8 or 10.77.0.5") from None
    if source_group:
        check_name(source_group, "source group")
    return Rule(rule_id, "egress" if egress else "ingress", proto, ports, cidr,
                source_group)


_RULE_WORDS = re.compile(
    r"^(?:(?P<dir>in|out)\s+)?(?P<proto>\S+)(?:\s+(?P<port>\d+(?:-\d+)?))?"
    r"(?:\s+(?P<side>from|to)\s+(?P<remote>\S+))?$")


def parse_rule_text(text: str, rule_id: int = 0) -> Rule:
    """A stack's rule: "[in|out] PROTO [PORT[-PORT]] [from|to CIDR_OR_GROUP]", like
    "tcp 22", "tcp 80 from web", "out udp 53 to 10.77.0.1"."""
    m = _RULE_WORDS.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m:
        raise InvalidSpec(f"rule {text!r:.60} is not '[in|out] PROTO [PORT[-PORT]] "
                          "[from|to CIDR_OR_GROUP]', like 'tcp 80 from web'")
    egress = m.group("dir") == "out"
    side, remote = m.group("side"), m.group("remote")
    if side and side != ("to" if egress else "from"):
        raise InvalidSpec(f"rule {text!r:.60}: an ingress rule says 'from', an egress "
                          "('out') rule says 'to'")
    is_cidr = bool(remote and re.match(r"^[\d./]+$", remote))
    return make_rule(rule_id, proto=m.group("proto"), port=m.group("port"),
                     source=remote if is_cidr else None,
                     source_group=remote if remote and not is_cidr else None, egress=egress)


def rule_text(rule: Rule) -> str:
    """The inverse of `parse_rule_text` (how a plan compares recorded rules)."""
    words = ["out"] if rule.direction == "egress" else []
    words.append(rule.proto)
    if rule.ports:
        words.append(str(rule.ports[0]) if rule.ports[0] == rule.ports[1]
                     else f"{rule.ports[0]}-{rule.ports[1]}")
    remote = rule.group or rule.cidr
    if remote:
        words += ["to" if rule.direction == "egress" else "from", remote]
    return " ".join(words)
