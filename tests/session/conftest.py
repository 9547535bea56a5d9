"""Session tier: qemu:///session as an unprivileged user (Binder's situation).

`scripts/session-tier.sh` (part of `make test`) runs this folder as such a user, with
NBCLOUD_URI=qemu:///session; in the system-tier run it is not collected."""
from __future__ import annotations

import os

import pytest

SESSION = os.environ.get("NBCLOUD_URI", "").startswith("qemu:///session")
collect_ignore_glob = [] if SESSION else ["test_*.py"]


@pytest.fixture(scope="module")
def session_cloud(tmp_path_factory):
    """A Cloud on the user's session daemon, with an inventory of its own."""
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    c = Cloud(inventory=Inventory(tmp_path_factory.mktemp("inv") / "inv.sqlite"))
    yield c
    c.close()
