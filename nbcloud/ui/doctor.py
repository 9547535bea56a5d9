"""`nbcloud doctor`: what works here, and one line on how to fix each problem."""
from __future__ import annotations

import html
from dataclasses import dataclass

from nbcloud.core.errors import CloudError, NotFound


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    ok: bool = True
    fix: str = ""


class Report:
    def __init__(self, checks: list[Check]):
        self.checks = checks

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def __getitem__(self, name: str) -> str:
        return next(c.value for c in self.checks if c.name == name)

    def __str__(self) -> str:
        lines = []
        for c in self.checks:
            lines.append(f"{c.name}: {c.value}")
            if not c.ok:
                lines.append(f"  fix: {c.fix}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(c.name)}</th>"
            f"<td style='text-align:left;color:{'inherit' if c.ok else '#c0392b'}'>"
            f"{html.escape(c.value)}{'' if c.ok else ' — ' + html.escape(c.fix)}</td></tr>"
            for c in self.checks)
        return f"<b>nbcloud doctor</b><table>{rows}</table>"


def diagnose(uri: str | None = None, cloud=None) -> Report:
    """Check the daemon (or the cloud), accelerator, pools, networks and images of `uri`."""
    from nbcloud.api import Cloud
    from nbcloud.core import config
    from nbcloud.providers.libvirt import host

    checks: list[Check] = []
    uri = cloud.uri if cloud else (uri or config.default_uri())
    missing = [] if uri.startswith("openstack:") else host.missing_programs()
    if missing:
        checks.append(Check("packages", "missing " + ", ".join(missing), False,
                            "apt-get install " + " ".join(missing) + " (or `make setup`)"))
    checks.append(Check("uri", uri))
    own = cloud is None
    try:
        cloud = cloud or Cloud(uri)
    except CloudError as exc:
        checks.append(Check("daemon", "not answering", False,
                            "run `nbcloud host up` (as root) to start libvirtd" if
                            uri.startswith("qemu:///system") else str(exc)))
        return Report(checks)
    try:
        checks += [Check(k, v) for k, v in cloud.provider.versions().items() if k != "uri"]
        acc = cloud.accelerator()
        checks.append(Check("accelerator", acc["accelerator"]))
        checks.append(Check("accelerator reason", acc["reason"]))
        checks += _engine_checks(cloud)
        images = [i.name for i in cloud.images.list()]
        try:
            cloud.images.get("tiny")
            tiny_ok = True
        except NotFound:
            tiny_ok = False
        checks.append(Check("images", ", ".join(images) or "(none)", tiny_ok,
                            "run `nbcloud image build tiny`" if cloud.provider.name ==
                            "libvirt" else "`%cloud image build tiny` uploads it to the "
                            "cloud's image service"))
        if tiny_ok:
            checks.append(_warm_check(cloud))
        if uri.startswith("qemu:///system"):
            checks.append(Check("KSM", host.ksm_state()))
        checks.append(Check("inventory", str(cloud.inventory.path)))
        for note in getattr(cloud, "recovery", []):
            checks.append(Check("recovery", note))
        interrupted = [o for o in cloud.inventory.operations(500)
                       if o["result"] == "interrupted"]
        if interrupted:
            checks.append(Check("interrupted operations", ", ".join(
                f"{o['id']}: {o['verb']} {o['kind']} {o['name']}" for o in interrupted),
                False, "`%cloud recover ID` undoes what each half-made, `%cloud recover "
                "ID --resume` finishes it"))
        pending = cloud.inventory.unfinished()
        if pending:
            # dead processes' operations were settled as 'interrupted' on open (recovery.py)
            checks.append(Check("operations under way", ", ".join(
                f"{p['verb']} {p['kind']} {p['name']} (pid {p['pid']})" for p in pending)))
    finally:
        if own:
            cloud.close()
    return Report(checks)


def _engine_checks(cloud) -> list[Check]:
    """Pools and the default network (libvirt), or what the cloud offers (OpenStack)."""
    from nbcloud.core.spec import USER_NETWORK
    from nbcloud.providers.base import CAPABILITIES
    from nbcloud.providers.libvirt.volumes import IMAGE_POOL, INSTANCE_POOL

    provider, checks = cloud.provider, []
    if provider.has("storage-pools"):
        pools = provider.pool_names()
        checks.append(Check("pools", ", ".join(pools) or "(none)",
                            INSTANCE_POOL in pools and IMAGE_POOL in pools,
                            "run `nbcloud host up`"))
    else:
        lacking = [CAPABILITIES[c].split(" (")[0] for c in CAPABILITIES
                   if not provider.has(c)]
        checks.append(Check("not offered here", ", ".join(lacking) or "(nothing)"))
    nets = provider.network_names()
    default = provider.default_network
    if default == USER_NETWORK:
        # a session daemon cannot make bridges: instances default to user networking
        checks.append(Check("networks", ", ".join(["user (user-mode; SSH through a "
                                                   "loopback port)", *nets])))
    else:
        net_ok = default in nets and provider.network_active(default)
        checks.append(Check("networks", ", ".join(nets) or "(none)",
                            net_ok or provider.is_test_driver,
                            f"run `nbcloud host up` to create and start the {default!r} "
                            "NAT network" if provider.name == "libvirt" else
                            f"reconnect: nbcloud makes network {default!r} when it "
                            "connects (the project may be out of network quota)"))
    return checks


def _warm_check(cloud) -> Check:
    """Whether tiny t.nano instances are warm clones here, and if not, why."""
    provider = cloud.provider
    check = provider.clone_check(cloud.images.get("tiny"), provider.flavor("t.nano"),
                                 (provider.default_network,))
    if check.ok:
        return Check("warm clones", "tiny t.nano instances are warm clones")
    if check.base_missing:
        return Check("warm clones", f"cold boots for now: {check.why} (the next create "
                     "builds it, or `%cloud image warm tiny`)")
    return Check("warm clones", f"cold boots: {check.why}")
