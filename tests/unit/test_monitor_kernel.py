"""The monitor inside a real ipykernel (test:///default): the sampler thread's widget
updates reach the front end while other cells run, attributed to the cell that started
the monitor (ipykernel >= 7 keeps the parent header per context; 7.0 is excluded in
pyproject), and after `%unload_ext nbcloud` the thread is gone and nothing more is sent."""
from __future__ import annotations

import time

import pytest

SETUP = """
%load_ext nbcloud
%config CloudMagics.inventory = {inventory!r}
%cloud connect test:///default
import libvirt
from nbcloud.providers.libvirt import xml as lx
conn = libvirt.open("test:///default")
dom = conn.defineXML(lx.domain_xml(lx.DomainDef(
    name="mo-kernel", vcpus=1, memory=128 << 20, domain_type="test",
    boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(),
    metadata={{"kind": "instance", "stack": "adhoc", "flavor": "c.nano"}})))
dom.create()
live = %cloud monitor mo-kernel --interval 0.2
print("MODEL", live.figure.model_id)
"""


def execute(kc, code: str, timeout: float = 60) -> tuple[str, list[dict]]:
    """Run `code`; return its msg_id and every iopub message seen until it is idle."""
    msg_id = kc.execute(code)
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except Exception:  # noqa: BLE001  (queue.Empty: nothing yet)
            continue
        seen.append(msg)
        if (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == msg_id):
            return msg_id, seen
    pytest.fail(f"cell did not finish within {timeout} s: {code[:60]!r}")


def stdout(msgs) -> str:
    return "".join(m["content"]["text"] for m in msgs
                   if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def test_sampler_updates_widgets_from_its_thread_and_stops_on_unload(tmp_path):
    import ipykernel
    from jupyter_client.manager import start_new_kernel
    assert not ipykernel.__version__.startswith("7.0."), "ipykernel 7.0 is excluded"
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        setup_id, msgs = execute(kc, SETUP.format(inventory=str(tmp_path / "inv.sqlite")))
        out = stdout(msgs)
        errors = [m for m in msgs if m["msg_type"] == "error"]
        assert not errors, errors[0]["content"]["evalue"] if errors else ""
        model = out.split("MODEL", 1)[1].split()[0]

        # another cell runs while the sampler ticks: the figure's updates keep coming
        _other, msgs = execute(kc, "import time\ntime.sleep(2)")
        updates = [m for m in msgs if m["msg_type"] == "comm_msg"
                   and m["content"]["comm_id"] == model]
        assert len(updates) >= 4, f"{len(updates)} figure updates in 2 s at 5 Hz"
        parents = {m["parent_header"].get("msg_id") for m in updates}
        major = int(ipykernel.__version__.split(".")[0])
        if major >= 7:   # the thread runs in the starting cell's context
            assert parents == {setup_id}
        _id, msgs = execute(kc, "%unload_ext nbcloud\nimport threading\n"
                                "print(sorted(t.name for t in threading.enumerate()))")
        assert "nbcloud-monitor" not in stdout(msgs)
        _id, msgs = execute(kc, "time.sleep(1)")
        assert not [m for m in msgs if m["msg_type"] == "comm_msg"
                    and m["content"]["comm_id"] == model], "updates after unload"
        # unloading wrote the buffered samples (the sampler writes every 10 s otherwise)
        _id, msgs = execute(kc, "from nbcloud.inventory import Inventory\n"
                                f"inv = Inventory({str(tmp_path / 'inv.sqlite')!r})\n"
                                "print('ROWS', len(inv.samples('test:///default', "
                                "'mo-kernel')))\nd = conn.lookupByName('mo-kernel')\n"
                                "d.destroy(); d.undefine()")
        assert int(stdout(msgs).split("ROWS", 1)[1].split()[0]) >= 5
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
