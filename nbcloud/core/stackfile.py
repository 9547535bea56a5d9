"""The stack model: the YAML body of a `%%cloud` cell -> validated spec objects.

A body has up to six sections, `network:`, `volume:`, `instance:`, `loadbalancer:`,
`secgroup:` and `ipool:`, each a mapping of resource name -> fields (DESIGN.md, The
magic). `{identifier}` is replaced by the notebook variable of that name. Every mistake raises `InvalidSpec` with one line naming the key and
what is allowed; YAML anchors and aliases are refused (they are how "billion laughs" bombs
are built, and a cell has no need of them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from nbcloud.core.scaling import Policy
from nbcloud.core.secrules import parse_rule_text
from nbcloud.core.spec import (
    POOL_MAX_SIZE,
    InstanceSpec,
    InvalidSpec,
    NetworkSpec,
    VolumeSpec,
    check_count,
    check_name,
)

MAX_TEXT = 64 * 1024          # characters of YAML in one cell
MAX_EVENTS = 20_000           # YAML parse events (roughly: scalars + collections)
MAX_DEPTH = 32                # nested collections (deeper ones overflow the parser's stack)
_VAR_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PLACEHOLDER_RE = re.compile(r"__nbcloud_var_(\d+)__")

SECTIONS = ("network", "volume", "instance", "loadbalancer", "secgroup", "ipool")
FIELDS = {
    "network": {"cidr": (str,), "mode": (str,)},
    "volume": {"size": (str, int), "tier": (str,)},
    "instance": {"image": (str,), "flavor": (str,), "vcpus": (int,), "memory": (str, int),
                 "network": (list, str),
                 "volume": (list, str), "count": (int,), "user_data": (str,),
                 "secgroup": (list, str), "host": (str,)},
    "secgroup": {"rules": (list,)},
    "loadbalancer": {"network": (str,), "port": (int,), "members": (list, str),
                     "algorithm": (str,), "member_port": (int,)},
    "ipool": {"image": (str,), "flavor": (str,), "vcpus": (int,), "memory": (str, int),
              "network": (str,), "size": (int,),
              "user_data": (str,), "secgroup": (list, str), "lb": (str,),
              "scale_out": (str,), "scale_in": (str,), "min": (int,), "max": (int,)},
}
REQUIRED = {"network": ("cidr",), "volume": ("size",), "instance": (),
            "loadbalancer": ("network",), "secgroup": (), "ipool": ()}
LB_ALGORITHMS = ("roundrobin", "leastconn")
_MEMBER_RE = re.compile(r"^[a-z0-9*?\[\]-]{1,63}$")   # a name or a glob like web-*
_TYPE_WORDS = {str: "a string", int: "a whole number", list: "a list of names"}


@dataclass(frozen=True)
class InstanceDecl(InstanceSpec):
    """One `instance:` entry: an instance's spec, plus the volumes it attaches, the
    security groups it joins and a `count`, which expands to NAME-1..NAME-N (`members`)."""
    volumes: tuple[str, ...] = ()
    count: int | None = None      # None: one instance called NAME
    secgroups: tuple[str, ...] = ()   # security groups of the stack it is a member of

    def members(self) -> list[InstanceSpec]:
        # With a count, always NAME-1..NAME-N: going from 2 to 1 keeps NAME-1.
        names = [self.name] if self.count is None else \
            [f"{self.name}-{i}" for i in range(1, self.count + 1)]
        return [InstanceSpec(check_name(n, "instance name"), self.image, self.flavor,
                             self.networks, self.user_data, host=self.host) for n in names]


@dataclass(frozen=True)
class SecgroupDecl:
    """One `secgroup:` entry: rules as "[in|out] PROTO [PORT[-PORT]] [from|to
    CIDR_OR_GROUP]" strings (secgroups.parse_rule_text), checked when it is built."""
    name: str
    rules: tuple[str, ...] = ()

    def __post_init__(self):
        check_name(self.name, "security group name")
        for rule in self.rules:
            if not isinstance(rule, str):
                raise InvalidSpec(f"secgroup.{self.name}.rules holds {rule!r:.40}: use "
                                  "strings like 'tcp 22' or 'tcp 80 from web'")
            parse_rule_text(rule)


@dataclass(frozen=True)
class LbDecl:
    """One `loadbalancer:` entry (loadbalancers.py); `members` are names or globs, matched
    against the instances on `network` when the stack is planned and applied."""
    name: str
    network: str
    port: int = 80
    members: tuple[str, ...] = ()
    algorithm: str = "roundrobin"
    member_port: int | None = None

    def __post_init__(self):
        where = f"loadbalancer.{self.name}"
        check_name(self.name, "load balancer name")
        check_name(self.network, f"{where}.network")
        for key in ("port", "member_port"):
            value = getattr(self, key)
            if value is not None and not 1 <= value <= 65535:
                raise InvalidSpec(f"{where}.{key} {value} is not allowed: use 1 to 65535")
        if self.algorithm not in LB_ALGORITHMS:
            raise InvalidSpec(f"{where}.algorithm {self.algorithm!r:.40} is not offered: use "
                              + " or ".join(LB_ALGORITHMS))
        for m in self.members:
            if not _MEMBER_RE.fullmatch(m):
                raise InvalidSpec(f"{where}.members holds {m!r:.40}: use instance names "
                                  "or patterns like web-*")


@dataclass(frozen=True)
class PoolDecl:
    """One `ipool:` entry (ipools.py): `size` members NAME-1..NAME-N from one template.
    With an autoscale rule, `size` is the starting size: then the autoscaler owns it."""
    name: str
    image: str = "tiny"
    flavor: str = "t.nano"
    network: str = "nbcloud"
    size: int = 1
    user_data: str | None = None
    secgroups: tuple[str, ...] = ()
    lb: str | None = None
    policy: dict | None = None       # Policy.to_json(), as ipools records it

    def template(self) -> dict:
        """The fields a pool cannot change in place, keyed as ipools records them."""
        return {"image": self.image, "flavor": self.flavor, "network": self.network,
                "user_data": self.user_data, "secgroups": list(self.secgroups),
                "lb": self.lb}


@dataclass(frozen=True)
class Stack:
    """The desired state of one stack."""
    name: str
    networks: dict[str, NetworkSpec] = field(default_factory=dict)
    volumes: dict[str, VolumeSpec] = field(default_factory=dict)
    instances: dict[str, InstanceDecl] = field(default_factory=dict)
    loadbalancers: dict[str, LbDecl] = field(default_factory=dict)
    secgroups: dict[str, SecgroupDecl] = field(default_factory=dict)
    ipools: dict[str, PoolDecl] = field(default_factory=dict)

    def members(self) -> dict[str, tuple[InstanceSpec, InstanceDecl]]:
        """Every instance the stack declares (counts expanded) -> (spec, declaration)."""
        out: dict[str, tuple[InstanceSpec, InstanceDecl]] = {}
        for decl in self.instances.values():
            for spec in decl.members():
                if spec.name in out:
                    raise InvalidSpec(f"instance {spec.name!r} is declared twice (a count "
                                      "expands to NAME-1..NAME-N): rename one")
                out[spec.name] = (spec, decl)
        return out


# ----- interpolation --------------------------------------------------------------------
def _protect(text: str, namespace: dict | None) -> tuple[str, list]:
    """Replace each `{identifier}` by a placeholder; return the text and the values."""
    values: list = []

    def sub(m: re.Match) -> str:
        var = m.group(1)
        if namespace is None or var not in namespace:
            raise InvalidSpec(f"{{{var}}} names no variable of the notebook: define "
                              f"`{var}` in a cell above, or remove the braces")
        value = namespace[var]
        if isinstance(value, bool) or not isinstance(value, (str, int, float, list, tuple)):
            raise InvalidSpec(f"{{{var}}} is a {type(value).__name__}: only strings, "
                              "numbers and lists of names can be put in a stack")
        values.append(list(value) if isinstance(value, tuple) else value)
        return f"__nbcloud_var_{len(values) - 1}__"
    return _VAR_RE.sub(sub, text), values


def _restore(node, values: list):
    """Put the variables' values back where their placeholders are (after YAML parsing,
    so a value can never change the document's structure)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            key = _restore(k, values)
            if isinstance(key, list):
                raise InvalidSpec(f"a list ({', '.join(map(str, key))[:40] or 'empty'}) "
                                  "cannot be a name or a key of a stack: put one name in "
                                  "the variable, or write the entries out")
            out[key] = _restore(v, values)
        return out
    if isinstance(node, list):
        return [_restore(v, values) for v in node]
    if isinstance(node, str):
        whole = _PLACEHOLDER_RE.fullmatch(node)
        if whole:
            return values[int(whole.group(1))]
        return _PLACEHOLDER_RE.sub(lambda m: str(values[int(m.group(1))]), node)
    return node


# ----- YAML -------------------------------------------------------------------------------
# libyaml's loader where PyYAML was built with it: the pure-Python one spends ~130 ms on a
# 200-resource stack, most of a plan's time (bench/plan.py)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> object:
    """`yaml.safe_load`, after refusing oversized text, anchors and aliases."""
    if len(text) > MAX_TEXT:
        raise InvalidSpec(f"the stack is {len(text)} characters long: a cell may hold at "
                          f"most {MAX_TEXT}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidSpec(f"character {exc.start + 1} of the stack is not text (a lone "
                              "UTF-16 surrogate): remove it") from None
    depth = 0
    try:
        for n, event in enumerate(yaml.parse(text, Loader=_LOADER)):
            if n > MAX_EVENTS:
                raise InvalidSpec(f"the stack has more than {MAX_EVENTS} YAML nodes: split "
                                  "it into several stacks")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise InvalidSpec(f"line {event.start_mark.line + 1}: the stack "
                                      f"nests more than {MAX_DEPTH} levels deep (a stack "
                                      "needs four)")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1
                raise InvalidSpec(f"line {line}: YAML anchors and aliases (&name, *name) are "
                                  "not allowed in a stack: write each resource out")
        return yaml.load(text, Loader=_LOADER)  # a safe loader, C or Python
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidSpec(f"{where}the stack is not valid YAML ({problem})") from None


def _typed(kind: str, name: str, key: str, value: object) -> object:
    allowed = FIELDS[kind][key]
    if isinstance(value, bool) or not isinstance(value, allowed):
        words = " or ".join(_TYPE_WORDS[t] for t in allowed)
        raise InvalidSpec(f"{kind}.{name}.{key} is {type(value).__name__} {value!r:.40}: "
                          f"use {words}")
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                raise InvalidSpec(f"{kind}.{name}.{key} holds {item!r:.40}: use a list of "
                                  "names")
    return value


def _names(value: object) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]


def parse(text: str | dict, namespace: dict | None = None, name: str = "default", *,
          default_network: str = "nbcloud") -> Stack:
    """Parse a cell body (or an already-loaded dict) into a validated `Stack`; an instance
    without `network` goes on `default_network` (`user` on a session daemon)."""
    check_name(name, "stack name")
    if isinstance(text, str):
        protected, values = _protect(text, namespace)
        doc = _restore(load_yaml(protected), values)
    else:
        doc = text
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise InvalidSpec("the stack must be a mapping with sections "
                          + ", ".join(f"{s}:" for s in SECTIONS))
    out: dict[str, dict] = {s: {} for s in SECTIONS}
    for section, body in doc.items():
        if section not in SECTIONS:
            raise InvalidSpec(f"section {section!r:.40} is unknown: use "
                              + ", ".join(f"{s}:" for s in SECTIONS))
        if body is None:
            continue
        if not isinstance(body, dict):
            raise InvalidSpec(f"section {section}: must map names to fields, like "
                              f"`{section}:\\n  NAME: {{...}}`")
        for rname, fields in body.items():
            check_name(rname, f"{section} name")
            fields = {} if fields is None else fields
            if not isinstance(fields, dict):
                raise InvalidSpec(f"{section}.{rname} must be a mapping of fields: use "
                                  + ", ".join(FIELDS[section]))
            for key, value in fields.items():
                if key not in FIELDS[section]:
                    shown = key if isinstance(key, str) and key.isprintable() else repr(key)
                    raise InvalidSpec(f"{section}.{rname}.{shown:.40} is unknown: use "
                                      + ", ".join(FIELDS[section]))
                _typed(section, rname, key, value)
            for key in REQUIRED[section]:
                if key not in fields:
                    raise InvalidSpec(f"{section}.{rname}.{key} is missing: it is required")
            out[section][rname] = fields
    return _build(name, out, default_network)


def _build(name: str, doc: dict[str, dict], default_network: str = "nbcloud") -> Stack:
    networks = {n: NetworkSpec(n, f["cidr"], f.get("mode", "nat"))
                for n, f in doc["network"].items()}
    volumes = {n: VolumeSpec(n, f["size"], f.get("tier", "ssd"))
               for n, f in doc["volume"].items()}
    instances: dict[str, InstanceDecl] = {}
    used_by: dict[str, str] = {}
    for n, f in doc["instance"].items():
        count = check_count(f["count"], f"instance.{n}.count") if "count" in f else None
        vols = _names(f.get("volume", ()))
        for v in vols:
            if v not in volumes:
                raise InvalidSpec(f"instance.{n}.volume names {v!r}, which is not in the "
                                  "volume: section: declare it there")
            if v in used_by:
                raise InvalidSpec(f"volume {v!r} is named by instances {used_by[v]!r} and "
                                  f"{n!r}: a volume attaches to one instance")
            used_by[v] = n
        if vols and count is not None and count > 1:
            raise InvalidSpec(f"instance.{n} has count {count} and a volume: a volume "
                              "attaches to one instance, so use count 1")
        decl = InstanceDecl(n, f.get("image", "tiny"), _flavor(f, f"instance.{n}"),
                            _names(f.get("network", (default_network,))), f.get("user_data"),
                            host=_host(f, f"instance.{n}.host"), volumes=vols, count=count,
                            secgroups=_names(f.get("secgroup", ())))
        for g in decl.secgroups:
            if g not in doc["secgroup"]:
                raise InvalidSpec(f"instance.{n}.secgroup names {g!r:.40}, which is not in "
                                  "the secgroup: section: declare it there")
        decl.members()  # validates every expanded name and field
        instances[n] = decl
    loadbalancers = {n: LbDecl(n, f["network"], f.get("port", 80),
                               _names(f.get("members", ())), f.get("algorithm", "roundrobin"),
                               f.get("member_port"))
                     for n, f in doc["loadbalancer"].items()}
    secgroups = {n: SecgroupDecl(n, tuple(f.get("rules") or ()))
                 for n, f in doc["secgroup"].items()}
    ipools = {n: _pool(n, f, doc, default_network) for n, f in doc["ipool"].items()}
    stack = Stack(name, networks, volumes, instances, loadbalancers, secgroups, ipools)
    for member in stack.members():
        pool, _, i = member.rpartition("-")
        if pool in ipools and i.isdigit():
            raise InvalidSpec(f"instance {member!r} would clash with the members of "
                              f"ipool.{pool} (called {pool}-1..{pool}-N): rename one")
    return stack


def _host(f: dict, where: str) -> str | None:
    """An entry's `host:` (several hosts: the one it must run on), checked as a name."""
    if "host" not in f:
        return None
    return check_name(f["host"], where)


def _flavor(f: dict, where: str) -> str:
    """An entry's flavor name: `flavor:`, or `vcpus:` and `memory:` for a custom instance
    type (named custom-VCPUS-MIB), t.nano when none is given."""
    from nbcloud.core.flavors import choose
    if "vcpus" not in f and "memory" not in f:  # checked with the entry's other fields
        return f.get("flavor", "t.nano")
    try:
        return choose(f.get("flavor"), f.get("vcpus"), f.get("memory"))
    except InvalidSpec as exc:  # worded as the magic's options: say the YAML keys
        raise InvalidSpec(f"{where}: {str(exc).replace('--', '')}") from None


def _pool(n: str, f: dict, doc: dict[str, dict], default_network: str) -> PoolDecl:
    """An `ipool:` entry, checked as `ipools.create` checks its arguments."""
    where = f"ipool.{n}"
    size = check_count(f.get("size", 1), f"{where}.size", maximum=POOL_MAX_SIZE)
    check_name(f.get("image", "tiny"), f"{where}.image")
    from nbcloud.core.flavors import get_flavor
    flavor = _flavor(f, where)
    try:
        get_flavor(flavor)
        policy = Policy.parse(f.get("scale_out"), f.get("scale_in"), f.get("min"),
                              f.get("max"))
    except InvalidSpec as exc:  # ipools words its errors as `%cloud ipool` options
        text = str(exc).replace("--scale-", "scale_").replace("--m", "m")
        raise InvalidSpec(f"{where}: {text}") from None
    if policy is not None and not policy.min <= size <= policy.max:
        raise InvalidSpec(f"{where}.size {size} is outside min {policy.min} .. max "
                          f"{policy.max}: start the pool within its bounds")
    network = check_name(f.get("network", default_network), f"{where}.network")
    lb = f.get("lb")
    if lb is not None:
        check_name(lb, f"{where}.lb")
        declared = doc["loadbalancer"].get(lb)
        if declared is not None and declared["network"] != network:
            raise InvalidSpec(f"{where}.lb {lb!r} is on network {declared['network']!r}, "
                              f"the pool on {network!r}: put them on one network")
    groups = _names(f.get("secgroup", ()))
    for g in groups:
        check_name(g, f"{where}.secgroup")
    return PoolDecl(n, f.get("image", "tiny"), flavor, network, size,
                    f.get("user_data"), groups, lb, policy.to_json() if policy else None)
