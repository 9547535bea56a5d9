"""The shape of the code, checked: test tiers are packages (so equal module names in two
tiers are harmless), no import circle in nbcloud (counting `TYPE_CHECKING` imports), no
module past 500 lines, the pure planner imports without libvirt, and every call that
services, workflows, the API or the UI make of a provider is declared in an interface of
providers/base.py and implemented by the libvirt provider.

The layer rules themselves are import-linter contracts (`.importlinter`), which the test
command runs as `lint-imports`."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "nbcloud"


def test_every_test_tier_is_a_package():
    tiers = [d for d in (ROOT / "tests").iterdir()
             if d.is_dir() and d.name != "__pycache__" and any(d.glob("test_*.py"))]
    assert tiers and all((d / "__init__.py").exists() for d in tiers)
    assert (ROOT / "tests" / "__init__.py").exists()


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_even_counting_type_checking_imports():
    graph = grimp.build_graph("nbcloud", exclude_type_checking_imports=False)
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m)
                 if i.startswith("nbcloud")}
             for m in graph.modules if m.startswith("nbcloud")}
    assert _circles(edges) == []
    # the check sees circles: a made-up one is found
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}


def test_the_pure_planner_imports_without_libvirt():
    # `sys.modules["libvirt"] = None` makes any import of libvirt fail, as on a machine
    # without libvirt-python
    code = ("import sys; sys.modules['libvirt'] = None\n"
            "import nbcloud.plan, nbcloud.core.stackfile, nbcloud.inventory\n"
            "from nbcloud.plan import compute\n"
            "from nbcloud.core.stackfile import parse\n"
            "print(compute(parse('network: {n: {cidr: 10.9.0.0/24}}', name='s'), [], "
            "nbcloud.plan.LiveState()).summary())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "1 to create" in out.stdout
    blocked = subprocess.run([sys.executable, "-c", "import sys; sys.modules['libvirt'] = "
                              "None; import nbcloud.providers.libvirt.provider"],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert blocked.returncode != 0   # the block works: the provider does need libvirt


def _provider_calls() -> dict[str, set[str]]:
    """provider.NAME -> the files above the provider layer that use it."""
    calls: dict[str, set[str]] = {}
    above = [PACKAGE / "api.py", *(PACKAGE / d for d in ("services", "workflows", "ui"))]
    for place in above:
        for path in ([place] if place.is_file() else place.rglob("*.py")):
            for m in re.finditer(r"\bprovider\.([a-z_]+)", path.read_text()):
                calls.setdefault(m.group(1), set()).add(path.name)
    return calls


def _attributes(cls) -> set[str]:
    return {n for c in cls.__mro__ for n in vars(c)}


def test_every_provider_call_is_declared_in_an_interface_and_implemented_by_each_engine():
    from nbcloud.providers.base import INTERFACES, HostGroup, Provider
    from nbcloud.providers.libvirt.cloud import LibvirtCloud
    from nbcloud.providers.libvirt.provider import LibvirtProvider
    from nbcloud.providers.openstack.provider import OpenStackProvider
    declared = set()
    for iface in INTERFACES:
        declared |= {n for n in vars(iface) if not n.startswith("_")}
        declared |= set(getattr(iface, "__annotations__", {}))
    calls = _provider_calls()
    assert len(calls) > 50     # the scan finds the calls
    assert {n: sorted(f) for n, f in calls.items() if n not in declared} == {}
    instance_attributes = {"uri", "paths", "conn", "is_test_driver",   # set in __init__
                           "home_host"}
    for engine in (LibvirtCloud, OpenStackProvider):
        assert issubclass(engine, Provider)
        assert (engine.__name__, sorted(declared - _attributes(engine)
                                        - instance_attributes)) == (engine.__name__, [])
    # each host of a libvirt cloud is a LibvirtProvider, which has every call but those
    # of the hosts themselves
    per_host = declared - set(vars(HostGroup)) - set(HostGroup.__annotations__)
    assert sorted(per_host - _attributes(LibvirtProvider) - instance_attributes) == []
