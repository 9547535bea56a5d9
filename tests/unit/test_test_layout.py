"""pytest imports every test module by its basename (no packages here), so two modules of
one name in different tiers stop the whole run at collection: caught here, in the fast tier,
before a full run finds it."""
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique_across_tiers():
    names = Counter(p.name for p in TESTS.rglob("test_*.py")
                    if "__pycache__" not in p.parts)
    assert {n: c for n, c in names.items() if c > 1} == {}
