"""A JupyterLab server of a test's own, started by the browser and lab tiers: waiting for
it to answer, and stopping it with everything it started."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


def wait_answering(proc: subprocess.Popen, base: str, token: str, log: Path,
                   timeout: float = 120) -> None:
    """Until the server at `base` answers its status; fail with its log's tail if it dies
    or stays silent for `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"JupyterLab did not answer: {log.read_text()[-800:]}")
            time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its kernels and terminals too), then KILL."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
