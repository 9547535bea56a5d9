"""Two verbs on the real daemon, asserted in what libvirt and the guests show: the cell magic
`%%cloud destroy --stack S` (everything the stack made goes: domains, disks, the volume, the
rows), and `%cloud ipool scale NAME N` out and in (members booted and answering as
themselves, the highest-numbered going first)."""
from __future__ import annotations

STACK, POOL = "nc-cdx", "nc-scl"
BODY = (f"volume:\n  {STACK}-data: {{size: 64M, tier: hdd}}\n"
        f"instance:\n  {STACK}-vm: {{flavor: t.nano, volume: [{STACK}-data]}}\n")


def volumes(cloud) -> set[str]:
    """Every volume of nbcloud's instance and data pools, as libvirt lists them."""
    return {v.name() for p in ("nbcloud", "nbcloud-ssd", "nbcloud-hdd")
            for v in cloud.provider.conn.storagePoolLookupByName(p).listAllVolumes()}


def test_cell_magic_destroy_removes_what_the_stack_made(cloud, ip):
    from nbcloud import _magics
    ip.run_cell_magic("cloud", f"apply --stack {STACK}", BODY)
    assert cloud.provider.state(f"{STACK}-vm") == "running"
    made = {v for v in volumes(cloud) if v.startswith(STACK)}
    assert f"{STACK}-data.hdd.qcow2" in made and any(v.startswith(f"{STACK}-vm.") for v in made)

    # the cell that applied it, its verb turned into destroy (its body is not read)
    plan = ip.run_cell_magic("cloud", f"destroy --stack {STACK}", BODY)
    assert [(a.op, a.kind, a.name) for a in plan.actions] == [
        ("delete", "instance", f"{STACK}-vm"), ("delete", "volume", f"{STACK}-data")]
    assert not cloud.provider.exists(f"{STACK}-vm")
    assert not {v for v in volumes(cloud) if v.startswith(STACK)}
    assert not [r for r in _magics.api.inventory.resources(_magics.api.uri)
                if r.stack == STACK]


def test_ipool_scale_out_and_in_on_real_guests(cloud, ip):
    from nbcloud import _magics
    ip.run_line_magic("cloud", f"ipool create {POOL} --flavor t.nano --size 1")
    try:
        ip.run_line_magic("cloud", f"ipool scale {POOL} 3")
        members = [f"{POOL}-{i}" for i in (1, 2, 3)]
        assert _magics.api.ipools.get(POOL).members == members
        for name in members:        # booted, and each answers as itself
            assert cloud.provider.state(name) == "running"
            assert _magics.api.instances.get(name).ssh("hostname").strip() == name
        ip.run_line_magic("cloud", f"ipool scale {POOL} 1")
        assert _magics.api.ipools.get(POOL).members == [f"{POOL}-1"]
        assert not cloud.provider.exists(f"{POOL}-2") and not cloud.provider.exists(f"{POOL}-3")
        assert cloud.provider.state(f"{POOL}-1") == "running"
    finally:
        ip.run_line_magic("cloud", f"ipool delete {POOL}")
    assert not [n for n in cloud.provider.managed() if n.startswith(f"{POOL}-")]
