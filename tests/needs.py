"""What a test needs from the machine (a program, a Python module, a tier's URI).

Where it is missing the test is skipped with the reason, on a developer's machine; in CI
(`NBCLOUD_CI=1`, set by .ci/run) a missing need fails the test instead: the set-up scripts
install everything the tiers use, so a skip there would hide a broken install."""
from __future__ import annotations

import importlib
import os
import shutil

import pytest

CI = os.environ.get("NBCLOUD_CI") == "1"


def missing(reason: str):
    """Skip with `reason`, or fail with it in CI."""
    if CI:
        pytest.fail(f"{reason} (NBCLOUD_CI=1: a missing need fails, it is not skipped)",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def program(name: str, why: str = "") -> str:
    """The path of program `name`; skips (fails in CI) where it is not installed."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed{': ' + why if why else ''}")
    return path


def module(name: str):
    """The imported module `name`; skips (fails in CI) where it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"Python module {name} is not installed (pip install -e '.[test]')")
