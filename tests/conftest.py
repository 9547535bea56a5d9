"""Shared fixtures. Tiers are pytest markers: unit (test:///default), integration (a real
daemon in the test network namespace, real TCG guests), browser (real JupyterLab in
headless Chromium), notebooks (nbval)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def nbcloud_home(tmp_path_factory):
    """Keys, probe cache and inventory of the test session, away from the user's own: set
    before any fixture opens a Cloud, and put back when the session ends (a test that needs
    a home of its own monkeypatches NBCLOUD_HOME over it)."""
    if os.environ.get("NBCLOUD_URI", "").startswith("qemu:///session"):
        # the session tier runs as Binder does, in the user's own nbcloud home: its
        # per-user daemon keeps the pools it defined there (binder/start stored the tiny
        # image in them), and scripts/session-tier.sh wipes that user's state first
        yield Path(os.environ.get("NBCLOUD_HOME") or
                   Path.home() / ".local/share/nbcloud")
        return
    home = tmp_path_factory.getbasetemp() / "nbcloud-home"
    home.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NBCLOUD_HOME", str(home))
        yield home


def pytest_collection_modifyitems(items):
    # A test's tier is its folder: tests/unit -> unit, tests/integration -> integration.
    for item in items:
        for tier in ("unit", "integration", "browser", "registries", "notebooks", "reliability",
                     "slow", "session", "openstack", "lab", "hosts"):
            if f"/tests/{tier}/" in str(item.fspath):
                item.add_marker(getattr(pytest.mark, tier))
