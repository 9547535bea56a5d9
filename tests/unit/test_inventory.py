import sqlite3
import threading

from nbcloud.inventory import SCHEMA_VERSION, Inventory


def test_schema_wal_and_version(tmp_path):
    inv = Inventory(tmp_path / "inv.sqlite")
    db = sqlite3.connect(tmp_path / "inv.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    inv.close()
    Inventory(tmp_path / "inv.sqlite").close()  # re-opening migrates nothing twice


def test_intent_then_outcome(tmp_path):
    inv = Inventory(tmp_path / "inv.sqlite")
    op = inv.begin("test:///default", "create", "instance", "web", flavor="t.nano")
    assert [o["name"] for o in inv.unfinished()] == ["web"]
    inv.finish(op, "ok")
    assert inv.unfinished() == []
    last = inv.operations(1)[0]
    assert (last["verb"], last["result"], last["args"]) == ("create", "ok",
                                                            '{"flavor": "t.nano"}')
    assert last["finished"] >= last["started"]


def test_resources_upsert_and_remove(tmp_path):
    inv = Inventory(tmp_path / "inv.sqlite")
    inv.put("u", "instance", "web", state="starting", spec={"flavor": "t.nano"}, uuid="1")
    inv.put("u", "instance", "web", state="running", spec={"flavor": "t.nano"})
    (res,) = inv.resources("u", "instance")
    assert (res.state, res.uuid, res.stack, res.spec) == ("running", "1", "adhoc",
                                                          {"flavor": "t.nano"})
    inv.remove("u", "instance", "web")
    assert inv.resources("u") == []


def test_concurrent_writers(tmp_path):
    path = tmp_path / "inv.sqlite"
    handles = [Inventory(path) for _ in range(4)]

    def write(inv, k):
        for i in range(25):
            inv.finish(inv.begin("u", "create", "instance", f"w{k}-{i}"))
    threads = [threading.Thread(target=write, args=(h, k)) for k, h in enumerate(handles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(handles[0].operations(1000)) == 100
    assert handles[0].unfinished() == []
