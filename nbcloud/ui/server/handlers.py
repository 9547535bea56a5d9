"""The Cloud panel's endpoints, under `{base_url}nbcloud/`:

  GET  state                   the inventory as the provider shows it now: instances,
                               volumes, networks, stacks..., their states, the topology's
                               nodes (with stable positions) and edges
  POST instances/NAME/start    start an instance (and wait until SSH answers)
  POST instances/NAME/stop     stop it (gracefully, forced after 30 s)
  GET  terminal?name=N[&serial=1]
                               the command a JupyterLab terminal runs for it

All are `APIHandler`s behind `@web.authenticated` and `@authorized`; POSTs pass Jupyter's
XSRF check. Cloud calls block, so they run in worker threads, one at a time per purpose:
reads on one `Cloud`, actions on another (a 30 s stop must not freeze the panel's list).
"""
from __future__ import annotations

import asyncio
import json
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from nbcloud.core import config
from nbcloud.core.errors import CloudError
from nbcloud.core.spec import InvalidSpec, check_name

#: a state this young is served again instead of read anew (several panels, one read)
FRESH = 0.5
#: how long the panel's reads may take before it says the cloud does not answer
READ_TIMEOUT = 60


class CloudAccess:
    """The server's clouds (opened on first use) and their worker threads."""

    def __init__(self, log):
        self.log = log
        self._clouds: dict[str, object] = {}
        self._locks = {"read": threading.Lock(), "act": threading.Lock()}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nbcloud-server")
        self._layout = None
        self._last: tuple[float, dict] | None = None

    def cloud(self, purpose: str):
        if purpose not in self._clouds:
            from nbcloud.api import Cloud
            self._clouds[purpose] = Cloud()
        return self._clouds[purpose]

    async def run(self, purpose: str, fn, *args):
        def call():
            with self._locks[purpose]:
                return fn(self.cloud(purpose), *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    # ----- what the panel shows ---------------------------------------------------------
    def state(self, cloud) -> dict:
        if self._last is not None and time.monotonic() - self._last[0] < FRESH:
            return self._last[1]
        from nbcloud.workflows.topology import Layout, build_graph
        graph = build_graph(cloud.services)
        if self._layout is None:
            self._layout = Layout()
        places = self._layout.place(graph)
        nodes = [{"id": f"{n.kind}:{n.name}", "kind": n.kind, "name": n.name,
                  "state": n.state, "stack": n.stack, "details": dict(n.details),
                  "x": places[n.id][0], "y": places[n.id][1]}
                 for n in sorted(graph.nodes.values(), key=lambda n: (n.kind, n.name))]
        stacks: dict[str, int] = {}
        for n in graph.nodes.values():
            if n.stack:
                stacks[n.stack] = stacks.get(n.stack, 0) + 1
        out = {"uri": cloud.uri, "nodes": nodes,
               "edges": sorted([f"{a[0]}:{a[1]}", f"{b[0]}:{b[1]}"] for a, b in graph.edges),
               "stacks": [{"name": k, "resources": v} for k, v in sorted(stacks.items())],
               "time": time.time()}
        self._last = (time.monotonic(), out)
        return out

    def act(self, cloud, name: str, action: str) -> str:
        inst = cloud.instances.get(name)
        self._last = None
        if action == "start":
            inst.start()
            return f"started {name}"
        return f"stopped {name} ({inst.stop()})"

    def terminal_command(self, name: str, serial: bool) -> str:
        check_name(name, "instance name")
        words = [sys.executable, "-m", "nbcloud", "--uri", config.default_uri(),
                 "terminal", name, *(["--serial"] if serial else [])]
        return shlex.join(words)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for cloud in self._clouds.values():
            cloud.close()


class _Base(APIHandler):
    auth_resource = "nbcloud"

    @property
    def access(self) -> CloudAccess:
        return self.settings["nbcloud"]

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish(json.dumps({"error": message}))


class StateHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self):
        try:
            state = await asyncio.wait_for(self.access.run("read", self.access.state),
                                           READ_TIMEOUT)
        except (CloudError, InvalidSpec) as exc:
            return self.fail(503, str(exc))
        except asyncio.TimeoutError:
            return self.fail(504, f"the cloud did not answer within {READ_TIMEOUT} s")
        self.finish(json.dumps(state))


class ActionHandler(_Base):
    @web.authenticated
    @authorized
    async def post(self, name: str, action: str):
        try:
            check_name(name, "instance name")
            done = await self.access.run("act", self.access.act, name, action)
        except (CloudError, InvalidSpec) as exc:
            return self.fail(400, str(exc))
        self.finish(json.dumps({"done": done}))


class TerminalHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self):
        try:
            command = self.access.terminal_command(self.get_argument("name"),
                                                   self.get_argument("serial", "") == "1")
        except (CloudError, InvalidSpec) as exc:
            return self.fail(400, str(exc))
        self.finish(json.dumps({"command": command}))


def setup(web_app, log) -> None:
    access = CloudAccess(log)
    web_app.settings["nbcloud"] = access
    base = url_path_join(web_app.settings["base_url"], "nbcloud")
    web_app.add_handlers(".*$", [
        (url_path_join(base, "state"), StateHandler),
        (url_path_join(base, r"instances/([^/]+)/(start|stop)"), ActionHandler),
        (url_path_join(base, "terminal"), TerminalHandler),
    ])
    log.info("nbcloud: Cloud panel endpoints at %s/", base)
