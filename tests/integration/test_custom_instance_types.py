"""Custom instance types on real guests: `%cloud instance create --vcpus --memory` and a
stack's `vcpus:`/`memory:`, asserted in libvirt's domain and inside the guest."""
from __future__ import annotations

import pytest
from IPython.core.error import UsageError

NAME, STACK = "nc-cu-web", "nc-cu"


def seen(cloud, inst) -> tuple[int, int, int, int]:
    """(libvirt's vCPUs, libvirt's memory MiB, the guest's CPUs, the guest's MemTotal MiB)"""
    dom = cloud.provider.conn.lookupByName(inst.name)
    _state, _max, memory_kib, vcpus, _cpu = dom.info()
    nproc = int(inst.ssh("grep -c ^processor /proc/cpuinfo"))
    mem = int(inst.ssh("awk '/MemTotal/ {print $2}' /proc/meminfo")) // 1024
    return vcpus, memory_kib // 1024, nproc, mem


def test_magic_creates_a_guest_of_the_asked_size(cloud, ip):
    from nbcloud import _magics
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)
    inst = ip.run_line_magic("cloud", f"instance create {NAME} --vcpus 2 --memory 320M")
    try:
        vcpus, memory, nproc, mem = seen(cloud, inst)
        assert (vcpus, memory, nproc) == (2, 320, 2)
        assert 200 < mem <= 320          # what the guest's kernel keeps for itself
        assert inst.meta["flavor"] == "custom-2-320"
        rows = {r["name"]: r for r in ip.run_line_magic("cloud", "instance list")}
        assert rows[NAME]["flavor"] == "custom-2-320"
        # a size beyond the host is refused before anything is changed
        cpus, _memory = cloud.provider.capacity()
        with pytest.raises(UsageError, match=f"use at most {cpus}"):
            ip.run_line_magic("cloud", f"instance resize {NAME} --vcpus {cpus + 1} "
                                       "--memory 320M")
        assert seen(cloud, inst)[:2] == (2, 320)
    finally:
        _magics.api.instances.delete(NAME)


def test_stack_yaml_vcpus_and_memory(cloud):
    body = f"instance:\n  {NAME}: {{vcpus: 2, memory: 256M}}\n"
    try:
        cloud.stacks.apply(STACK, body)
        inst = cloud.instances.get(NAME)
        vcpus, memory, nproc, _mem = seen(cloud, inst)
        assert (vcpus, memory, nproc) == (2, 256, 2)
        assert not cloud.stacks.plan(STACK, body)            # converged: nothing to do
        assert "flavor=custom-2-256" in str(cloud.stacks.show(STACK))
    finally:
        cloud.stacks.destroy(STACK)
    assert not cloud.provider.exists(NAME)
