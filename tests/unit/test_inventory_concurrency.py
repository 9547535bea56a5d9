"""Two separate processes writing one inventory file at the same time lose nothing and
never see "database is locked" (WAL, busy_timeout, BEGIN IMMEDIATE)."""
from __future__ import annotations

import multiprocessing as mp

from nbcloud.inventory import Inventory

OPS = 300


def _writer(path: str, tag: str, start, errors) -> None:
    start.wait()
    try:
        inv = Inventory(path)
        for i in range(OPS):
            with inv.operation("u", "create", "volume", f"{tag}{i}", size=i):
                inv.put("u", "volume", f"{tag}{i}", state="available", stack=tag,
                        spec={"size": i})
            if i % 3 == 0:  # and some go away again
                inv.remove("u", "volume", f"{tag}{i}")
            inv.set_state("u", "volume", f"{tag}{i - 1}", "attached")
            inv.resources("u", "volume")
        inv.put_stack(tag, f"volume: {{}}  # {tag}")
        inv.close()
    except Exception as exc:  # reported to the parent, which fails the test with it
        errors.put(f"{tag}: {type(exc).__name__}: {exc}")


def test_two_processes_lose_nothing_and_never_lock(tmp_path):
    path = str(tmp_path / "inv.sqlite")
    ctx = mp.get_context("spawn")  # separate interpreters, no inherited connection
    start, errors = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, tag, start, errors))
             for tag in ("a", "b")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == [] and [p.exitcode for p in procs] == [0, 0]

    inv = Inventory(path)
    ops = inv.operations(10 * OPS)
    assert len(ops) == 2 * OPS and {o["result"] for o in ops} == {"ok"}
    assert inv.unfinished() == []
    for tag in ("a", "b"):
        rows = {r.name: r for r in inv.resources("u", "volume") if r.stack == tag}
        assert set(rows) == {f"{tag}{i}" for i in range(OPS) if i % 3}
        assert rows[f"{tag}{OPS - 2}"].state == "attached"
    assert [s["name"] for s in inv.stacks()] == ["a", "b"]
