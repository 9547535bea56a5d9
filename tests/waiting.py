"""Polling for what a guest or libvirt shows a little later (a lease, a DNS name)."""
from __future__ import annotations

import time

import pytest


def wait_for(predicate, timeout: float, what: str, interval: float = 0.3):
    """The first truthy value of `predicate()` within `timeout` s, else fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")
