"""The runbooks' test (tests/integration/test_runbooks.py) again on the session tier:
qemu:///session as an unprivileged user, user-mode networking, SSH through loopback ports.
The same tests, fixtures and assertions; the module picks its tier from NBCLOUD_URI."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.needs import missing

_path = Path(__file__).resolve().parents[1] / "integration" / "test_runbooks.py"
_spec = importlib.util.spec_from_file_location("rb_runbooks_on_session", _path)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
globals().update({k: v for k, v in vars(_module).items() if not k.startswith("__")})

pytestmark = pytest.mark.session
if not SESSION:  # noqa: F821  (from the module above)
    missing("the session tier runs with NBCLOUD_URI=qemu:///session")
