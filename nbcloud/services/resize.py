"""Resizing an instance: the cloud's own resize where the engine has flavors of its own,
else live (only the CPU share differs) or stop, redefine and start."""
from __future__ import annotations

from nbcloud.core.spec import Flavor


def resize(inst, new: Flavor, timeout: float) -> str:
    """Resize instance handle `inst` to flavor `new`; says how it was done."""
    provider, meta = inst.provider, inst.meta
    running = inst.state == "running"
    if provider.engine_flavors:   # the cloud's own resize, whatever changes
        inst.close()
        provider.resize(inst.name, new)
        provider.set_metadata(inst.name, {**meta, "flavor": new.name})
        if running:
            inst.wait_ready()
        return "resized by the cloud"
    old = inst.provider.flavor(meta["flavor"])
    if (new.vcpus, new.memory) == (old.vcpus, old.memory):
        how = "live"
        if running and not provider.set_cpu_share(inst.name, new.cpu_share):
            how = "live (the CPU share is not enforced on this host)"
    else:
        how = "stopped, redefined and started" if running else "redefined"
        if running:
            inst.stop(timeout)
        provider.resize(inst.name, new)
    provider.set_metadata(inst.name, {**meta, "flavor": new.name})
    if running and how.startswith(("stopped", "redefined")):
        inst.start()
    return how
