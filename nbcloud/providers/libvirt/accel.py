"""Which accelerator instances use: `kvm` when a probe boot under KVM reaches init within
a few seconds, else `tcg` (QEMU's software emulation). The answer is cached per host.

On some hosts /dev/kvm exists but cannot run a stock kernel (a nested or paravirtual
hypervisor): the KVM guest hangs without output, so capabilities alone are not trusted.
"""
from __future__ import annotations

import grp
import json
import os
import uuid
from pathlib import Path

from nbcloud.core import config
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.local import is_local

PROBE_VERSION = 2           # bump when the probe changes: cached answers are then redone
PROBE_TIMEOUT = 8.0          # KVM reaches init in well under a second; TCG needs ~3-4 s
MARKER = b"Run /init"        # the kernel's line as it starts the initramfs's init


def _cache_file() -> Path:
    return config.home() / "accelerator.json"


def _cache_key(backend) -> str:
    v = backend.versions()
    kvm = os.path.exists("/dev/kvm")
    return (f"{v['uri']}|{os.uname().release}|qemu-{v['hypervisor']}|kvm-dev={kvm}"
            f"|probe-{PROBE_VERSION}")


def cached(backend) -> dict | None:
    try:
        return json.loads(_cache_file().read_text()).get(_cache_key(backend))
    except (OSError, ValueError):
        return None


def kvm_device_problem(uri: str) -> str | None:
    """Why QEMU could not open /dev/kvm on this machine, or None if it can.

    libvirt takes most of a minute to report a QEMU that failed on /dev/kvm's permissions,
    so this is checked before any probe boot."""
    try:
        st = os.stat("/dev/kvm")
    except OSError:
        return "this machine has no /dev/kvm"
    if uri.startswith("qemu:///system"):
        try:
            kvm_gid = grp.getgrnam("kvm").gr_gid
        except KeyError:
            kvm_gid = -1
        if st.st_mode & 0o006 == 0o006 or (st.st_gid == kvm_gid and st.st_mode & 0o060 == 0o060):
            return None
        return ("/dev/kvm is not open to the kvm group that QEMU runs in (fix: "
                "chgrp kvm /dev/kvm && chmod 660 /dev/kvm, or `nbcloud host up`)")
    return None if os.access("/dev/kvm", os.R_OK | os.W_OK) else \
        "/dev/kvm is not open to this user (fix: add the user to the kvm group)"


def probe(backend, image, console_dir: Path) -> dict:
    """Boot `image` (a kernel-boot image) under KVM and watch for init; cache the result."""
    if backend.is_test_driver:
        return {"accelerator": "test", "reason": "libvirt test driver"}
    local_problem = kvm_device_problem(backend.uri) if is_local(backend.uri) else None
    if "kvm" not in backend.domain_types():
        result = {"accelerator": "tcg", "reason": "the host offers no KVM domain type"}
    elif local_problem:
        result = {"accelerator": "tcg", "reason": local_problem}
    elif image is None or image.kind != "kernel":
        return {"accelerator": "tcg", "reason": "not probed yet: build the tiny image "
                "(nbcloud image build tiny); software emulation until then"}
    else:
        name = f"nbcloud-probe-{uuid.uuid4().hex[:8]}"
        cmdline = " ".join(w for w in image.cmdline.split() if w != "quiet") + \
            " loglevel=6 nbcloud.probe=1"
        console_dir.mkdir(parents=True, exist_ok=True)
        d = lx.DomainDef(name=name, vcpus=1, memory=128 << 20, domain_type="kvm",
                         boot=lx.KernelBoot(image.kernel, image.initrd, cmdline),
                         console_log=str(console_dir / f"{name}.console.log"))
        failure = backend.probe_boot(d, MARKER, PROBE_TIMEOUT)
        if failure is None:
            result = {"accelerator": "kvm", "reason": "a KVM probe boot reached init"}
        else:
            result = {"accelerator": "tcg", "reason": f"KVM is not usable: {failure}; "
                      "using software emulation"}
    cache = {}
    try:
        cache = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        pass
    cache[_cache_key(backend)] = result
    _cache_file().write_text(json.dumps(cache, indent=1))
    return result


def domain_type(accelerator: str) -> str:
    """libvirt's domain type for an accelerator name."""
    return {"kvm": "kvm", "test": "test"}.get(accelerator, "qemu")
