"""Browser tier: real JupyterLab in Debian's headless Chromium, on the real daemon (in the
test network namespace, like the integration tier)."""
from __future__ import annotations

import pytest

from tests.real_daemon import open_cloud


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """The real daemon, checked to answer here before JupyterLab starts."""
    c = open_cloud(tmp_path_factory, "browser")
    yield c
    c.close()
