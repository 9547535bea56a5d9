"""What a benchmark ran on: CPU model, cores, kernel, libvirt and QEMU versions, and how
busy the machine was (the load average beside the core count says quiet or loaded)."""
from __future__ import annotations

import os
import platform
import subprocess


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    try:
        out = subprocess.run(["virsh", "-c", "qemu:///system", "version"], text=True,
                             capture_output=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = {}
    for line in out.splitlines():
        if line.startswith("Using library:"):
            found["libvirt"] = line.split("libvirt", 1)[-1].strip()
        elif line.startswith("Running hypervisor:"):
            found["qemu"] = line.split("QEMU", 1)[-1].strip()
    return found


def describe() -> dict:
    load = os.getloadavg()
    cores = os.cpu_count() or 1
    return {"cpu": _cpu_model(), "cores": cores, "kernel": platform.release(),
            "python": platform.python_version(), **_versions(),
            "load_1m": round(load[0], 2), "load_5m": round(load[1], 2),
            "busy": "loaded" if load[1] > 0.75 * cores else "quiet"}
