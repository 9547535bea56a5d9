"""Run a program inside a network namespace without losing the host's cgroup mounts.

`ip netns exec` gives the program a fresh /sys (so it sees the namespace's interfaces),
which hides /sys/fs/cgroup: a libvirtd started that way runs its guests without cgroups,
so it can neither cap a vCPU (shared-CPU flavors) nor report per-domain CPU time. This
module is what `ip netns exec` runs: it mounts the host's cgroup hierarchies again, then
becomes the program.

    python -m nbcloud.providers.libvirt.nsexec MOUNTS_JSON PROGRAM ARGS...
"""
from __future__ import annotations

import json
import subprocess
import sys

CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_mounts() -> list[list[str]]:
    """[fstype, path, options] of the mounts at and under /sys/fs/cgroup, parents first."""
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            _, path, fstype, options = line.split()[:4]
            if (path == CGROUP_ROOT or path.startswith(CGROUP_ROOT + "/")) and \
                    fstype in ("tmpfs", "cgroup", "cgroup2"):
                found.append([fstype, path, options])
    return sorted(found, key=lambda m: m[1].count("/"))


def command(netns: str, argv: list[str]) -> list[str]:
    """The command line that runs `argv` in `netns` with the cgroup mounts restored."""
    return ["ip", "netns", "exec", netns, sys.executable, "-m", "nbcloud.providers.libvirt.nsexec",
            json.dumps(cgroup_mounts()), *argv]


def main(args: list[str]) -> None:
    import os
    mounts, argv = json.loads(args[0]), args[1:]
    for fstype, path, options in mounts:
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", fstype, "-o", options, fstype, path], check=True)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
