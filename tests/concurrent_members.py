"""Many members joining one security group and one load balancer at once, from several
processes (the integration and reliability tiers): instances defined, not started (no
guest has to boot for membership), each with nbcloud's metadata, a NIC on the test's
network and its row in the shared inventory, as `instances.create` would leave them."""
from __future__ import annotations

import ipaddress
import multiprocessing as mp
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nbcloud.providers.libvirt import xml as lx


def define_members(cloud, names: list[str], network: str) -> dict[str, str]:
    """Define a stopped nbcloud instance per name on `network`; name -> its address."""
    net = cloud.provider.network(network).network
    out = {}
    for i, name in enumerate(names):
        ip, mac = str(net.network_address + 10 + i), f"52:54:00:5e:{i // 256:02x}:{i % 256:02x}"
        meta = {"kind": "instance", "stack": "adhoc", "image": "tiny", "flavor": "t.nano",
                "networks": network, "ip": ip, "ips": f"{network}={ip}", "mac": mac,
                "created": "0"}
        d = lx.DomainDef(name=name, vcpus=1, memory=64 << 20,
                         nics=(lx.Nic(network, mac, ip=ip),), metadata=meta)
        cloud.provider.conn.defineXML(lx.domain_xml(d))
        cloud.ctx.inventory.put("instance", name, state="stopped",
                                spec={"networks": [network], "image": "tiny",
                                      "flavor": "t.nano"})
        out[name] = ip
    assert all(ipaddress.IPv4Address(ip) in net for ip in out.values())
    return out


def _joiner(uri: str, inventory: str, group: str, lb: str, names: list[str], threads: int,
            start, errors) -> None:
    """One process: attach `names` to `group` and `lb`, `threads` at a time."""
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    start.wait()
    try:
        cloud = Cloud(uri, inventory=Inventory(inventory))

        def join(name: str) -> None:
            cloud.secgroups.attach(group, name)
            cloud.lbs.add_members(lb, [name])
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(join, names))
        cloud.close()
    except Exception as exc:  # reported to the parent
        errors.put(f"{type(exc).__name__}: {exc}")


def join_from_processes(cloud, group: str, lb: str, parts: list[list[str]],
                        threads: int = 4) -> list[str]:
    """Each part joined by a process of its own (spawned: no inherited connection), all
    at once; returns the errors they met."""
    ctx = mp.get_context("spawn")
    start, errors = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_joiner, args=(cloud.uri, str(cloud.ctx.inventory.path),
                                               group, lb, part, threads, start, errors))
             for part in parts]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(600)
    out = [f"process exit status {p.exitcode}" for p in procs if p.exitcode != 0]
    while not errors.empty():
        out.append(errors.get())
    return out


def haproxies(cfg: Path) -> list[int]:
    """Pids of the HAProxy processes serving config file `cfg`."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"haproxy") and str(cfg).encode() in argv:
            out.append(int(pid))
    return out


def lost_members(cloud, group: str, lb: str, addresses: dict[str, str]) -> list[str]:
    """What the records and the engine lost of `addresses` (member -> address): one line
    per loss, empty when nothing was lost."""
    from nbcloud.providers.libvirt.firewall import group_filter, instance_filter
    owner, want = cloud.secgroups.owner, sorted(addresses)
    lost = [f"group record lost {m}" for m in want
            if m not in cloud.secgroups.get(group).instances]
    lost += [f"balancer record lost {m}" for m in want
             if m not in cloud.lbs.record(lb).spec["members"]]
    rules = cloud.provider.nwfilter(group_filter(owner, group)).rules
    allowed = {r.match.get("srcipaddr") for r in rules}
    lost += [f"group filter lost {m}" for m in want if addresses[m] not in allowed]
    lost += [f"{m} not filtered by its instance filter" for m in want
             if set(cloud.provider.interface_filters(m, inactive=True).values())
             != {instance_filter(owner, m)}]
    cfg = cloud.provider.balancer_process(lb).cfg
    servers = set(re.findall(r"^\s*server (\S+) ", cfg.read_text(), re.M))
    lost += [f"HAProxy config lost {m}" for m in want if m not in servers]
    return lost
