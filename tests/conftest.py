"""Shared fixtures. Tiers are pytest markers: unit (test:///default), integration (a real
daemon in the test network namespace, real TCG guests), notebooks (nbval)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def nbcloud_home(tmp_path_factory, monkeypatch):
    """Keys, probe cache and inventory of the test session, away from the user's own."""
    home = tmp_path_factory.getbasetemp() / "nbcloud-home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("NBCLOUD_HOME", str(home))
    return home


def pytest_collection_modifyitems(items):
    # A test's tier is its folder: tests/unit -> unit, tests/integration -> integration.
    for item in items:
        for tier in ("unit", "integration", "notebooks", "reliability", "slow", "session",
                     "openstack", "hosts"):
            if f"/tests/{tier}/" in str(item.fspath):
                item.add_marker(getattr(pytest.mark, tier))
