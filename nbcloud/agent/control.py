"""`nbcloud host up` / `host down` with the host agent: the daemon (providers/libvirt/
host.py), then the agent under its supervisor; and `agent status`.

`up` returns once the agent has restored what a host restart stopped (or after `wait`
seconds, saying so), with its report. `down` stops the agent first, so that it does not
restart the balancers `down` stops next. A `Host` names the daemon's URI, the state file
(the agent's folder is beside it), the network namespace the daemon's networks live in
(a name, or a namespace file's path for a private daemon) and the inventory the agent
serves (by default that of the user who runs `host up`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nbcloud.agent import supervisor
from nbcloud.agent.daemon import RESTORING
from nbcloud.inventory import Inventory
from nbcloud.providers.libvirt import host


@dataclass(frozen=True)
class Host:
    uri: str = host.SYSTEM
    state: Path = host.STATE
    netns: str | None = None
    inventory: Path | None = None
    interval: float = 1.0

    @property
    def folder(self) -> Path:
        """The agent's lock, pid files and log."""
        return self.state.parent / "agent"


def up(h: Host, *, start_daemon: bool = True, agent: bool = True,
       wait: float = 600.0) -> list[str]:
    """The daemon (unless the caller runs it), nbcloud's pools and network, then the
    agent; returns what was done, the agent's restore report included."""
    done = host.up(h.netns if start_daemon else None, uri=h.uri, state=h.state,
                   start_daemon=start_daemon)
    if agent:
        done += start_agent(h, wait)
    return done


def start_agent(h: Host, wait: float = 600.0) -> list[str]:
    """Start the agent's supervisor unless it runs; wait until the agent has restored.
    One that another installation of nbcloud started (another interpreter: a checkout
    since deleted or upgraded) is replaced by this one's."""
    done: list[str] = []
    pid = supervisor.running(h.folder)
    if pid is not None:
        theirs = supervisor.program(pid)
        if theirs == sys.executable:
            return [f"the host agent runs already (supervisor pid {pid})"]
        done += supervisor.stop(h.folder)
        done.append(f"(it ran {theirs or 'another program'}, not {sys.executable}: "
                    "replaced)")
    inv = Inventory(h.inventory)
    try:
        sup = supervisor.spawn(h.uri, inv.path, h.folder, netns=h.netns,
                               interval=h.interval)
        done.append(f"started the host agent (supervisor pid {sup}, log "
                    f"{h.folder / 'agent.log'})")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            row = inv.agent(h.uri)
            if row is not None and row["note"] not in ("", RESTORING):
                return done + [f"agent: {line}" for line in row["note"].splitlines()]
            if supervisor.running(h.folder) is None:
                return done + [f"the host agent stopped: see {h.folder / 'agent.log'}"]
            time.sleep(0.2)
        return done + [f"the agent is still restoring after {wait:.0f} s: "
                       "`nbcloud agent status` tells when it is done"]
    finally:
        inv.close()


def down(h: Host, *, stop_daemon: bool = True) -> list[str]:
    """Stop the agent, then what `host.down` stops."""
    return supervisor.stop(h.folder) + host.down(uri=h.uri, state=h.state, netns=h.netns,
                                                 stop_daemon=stop_daemon)


def status(h: Host) -> list[str]:
    """Whether the agent runs, since when it last beat, and its restore report."""
    sup, agent = supervisor.running(h.folder), supervisor.agent_pid(h.folder)
    lines = [f"supervisor: {'pid ' + str(sup) if sup else 'not running'}",
             f"agent: {'pid ' + str(agent) if agent else 'not running'}"]
    inv = Inventory(h.inventory)
    try:
        row = inv.agent(h.uri)
    finally:
        inv.close()
    if row is None:
        lines.append(f"no agent serves {h.uri} in {inv.path}: kernels sample, scale and "
                     "supervise themselves")
    else:
        lines.append(f"serving {h.uri} from {inv.path}: pid {row['pid']}, last beat "
                     f"{time.time() - row['beat']:.1f} s ago, "
                     f"{sum(s == 'running' for s in row['states'].values())} instances "
                     "running")
        lines += [f"  {line}" for line in row["note"].splitlines()]
    return lines
