"""The SQLite inventory: what nbcloud created, and an append-only operations log.

One file per user (WAL, busy_timeout, BEGIN IMMEDIATE for writes). Intent is recorded
before libvirt is touched and the outcome after, so an interrupted operation is visible.
A file that fails `PRAGMA integrity_check` (or is no database at all) is moved aside and a
fresh one made; `Cloud` then rebuilds the rows from libvirt (recovery.py).
"""
from __future__ import annotations

import getpass
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nbcloud.core import config
from nbcloud.core.schema import _MIGRATIONS, SCHEMA_VERSION  # noqa: F401  (re-exported)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Resource:
    uri: str
    kind: str
    name: str
    stack: str
    spec: dict
    uuid: str | None
    state: str


def _resource(row: sqlite3.Row) -> Resource:
    return Resource(row["uri"], row["kind"], row["name"], row["stack"],
                    json.loads(row["spec"]), row["uuid"], row["state"])


@dataclass
class Operation:
    """An operation under way; the body of `Inventory.operation` may set `detail`."""
    id: int
    detail: str = ""


class Inventory:
    """A thread-safe handle on the inventory file."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else config.home() / "inventory.sqlite"
        self._lock = threading.RLock()
        self.moved_aside: Path | None = None   # where a corrupt file went, if it did
        try:
            self._open()
        except sqlite3.OperationalError:
            raise  # locked, unreadable directory...: not corruption, leave the file be
        except sqlite3.DatabaseError as exc:
            if getattr(self, "_db", None) is not None:
                self._db.close()
            self.moved_aside = self._move_aside(str(exc))
            self._open()

    @property
    def rebuilt(self) -> bool:
        """Whether this handle replaced a corrupt file with a fresh, empty one."""
        return self.moved_aside is not None

    def _open(self) -> None:
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=30000")
        self._wal()
        problems = [r[0] for r in self._db.execute("PRAGMA integrity_check").fetchall()]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("; ".join(problems[:3]))
        self._migrate()

    def _wal(self) -> None:
        """Put the file in WAL mode. On a new file two processes doing so at once may be
        told "database is locked" at once (the switch takes an exclusive lock that the
        busy timeout does not wait for): asked again until it is taken, within 30 s."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _move_aside(self, why: str) -> Path:
        """Rename the corrupt file (and its WAL) to `<name>.corrupt-<timestamp>`."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.replace(Path(f"{aside}{suffix}"))
        (aside.with_name(aside.name + ".why")).write_text(why + "\n")
        return aside

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in filter(str.strip, _MIGRATIONS[step].split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={step}")

    # ----- operations log -----------------------------------------------------------------
    def begin(self, uri: str, verb: str, kind: str, name: str, **args) -> int:
        """Record the intent of an operation; returns its id for `finish`."""
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO operations (started, user, uri, verb, kind, name, args, result,"
                " pid) VALUES (?, ?, ?, ?, ?, ?, ?, 'started', ?)",
                (time.time(), getpass.getuser(), uri, verb, kind, name,
                 json.dumps(args, sort_keys=True, default=str), os.getpid()))
            return int(cur.lastrowid)

    @contextmanager
    def operation(self, uri: str, verb: str, kind: str, name: str,
                  **args) -> Iterator[Operation]:
        """Record the intent, run the body, then the outcome: 'ok' with the `detail` the
        body set, or 'failed' with the error (which is raised on)."""
        op = Operation(self.begin(uri, verb, kind, name, **args))
        try:
            yield op
        except BaseException as exc:
            self.finish(op.id, "failed", str(exc))
            raise
        self.finish(op.id, "ok", op.detail)

    def finish(self, op_id: int, result: str = "ok", detail: str = "") -> None:
        with self._write() as db:
            db.execute("UPDATE operations SET finished=?, result=?, detail=? WHERE id=?",
                       (time.time(), result, detail, op_id))

    def resolve(self, op_id: int, result: str, detail: str = "",
                was: tuple[str, ...] = ("started",)) -> bool:
        """Settle an operation whose result is one of `was` (by default left 'started'),
        e.g. as 'interrupted' or 'rolled back'; False if it had another result."""
        marks = ",".join("?" * len(was))
        with self._write() as db:
            cur = db.execute("UPDATE operations SET finished=?, result=?, detail=? WHERE id=?"
                             f" AND result IN ({marks})",
                             (time.time(), result, detail, op_id, *was))
            return cur.rowcount == 1

    def operation_by_id(self, op_id: int) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM operations WHERE id=?",
                                   (op_id,)).fetchone()
        return dict(row) if row else None

    def stale(self) -> list[dict]:
        """Unfinished operations whose process is gone (on this host): interrupted."""
        return [op for op in self.unfinished()
                if op.get("pid") != os.getpid() and not _alive(op.get("pid"))]

    def operations(self, limit: int = 50) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM operations ORDER BY id DESC LIMIT ?",
                                    (limit,)).fetchall()
        return [dict(r) for r in rows]

    def unfinished(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM operations WHERE result='started' ORDER BY id").fetchall()
        return [dict(r) for r in rows]

    # ----- resources ----------------------------------------------------------------------
    def put(self, uri: str, kind: str, name: str, *, state: str, spec: dict | None = None,
            uuid: str | None = None, stack: str = "adhoc") -> None:
        now = time.time()
        with self._write() as db:
            db.execute(
                "INSERT INTO resources (uri, kind, name, stack, spec, uuid, state, created,"
                " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (uri, kind, name) DO UPDATE SET stack=excluded.stack,"
                " spec=excluded.spec, uuid=COALESCE(excluded.uuid, uuid),"
                " state=excluded.state, updated=excluded.updated",
                (uri, kind, name, stack, json.dumps(spec or {}, sort_keys=True), uuid,
                 state, now, now))

    def set_state(self, uri: str, kind: str, name: str, state: str) -> None:
        with self._write() as db:
            db.execute("UPDATE resources SET state=?, updated=? WHERE uri=? AND kind=? AND"
                       " name=?", (state, time.time(), uri, kind, name))

    def remove(self, uri: str, kind: str, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM resources WHERE uri=? AND kind=? AND name=?",
                       (uri, kind, name))

    def update(self, uri: str, kind: str, name: str,
               change: Callable[[Resource | None], dict | None], *,
               state: str | None = None, stack: str | None = None,
               claim: bool = False) -> Resource | None:
        """Read-modify-write one record in one `BEGIN IMMEDIATE` transaction, so that no
        other thread or process writes it in between: `change(current)` returns the new
        spec (None: leave the record as it is; it may raise to change nothing). `state`,
        when given, becomes the record's state; `stack` is the stack of a record made here
        (an existing one keeps its own, unless `claim`: then it joins `stack`). Returns
        the record as written."""
        with self._write() as db:
            row = db.execute("SELECT * FROM resources WHERE uri=? AND kind=? AND name=?",
                             (uri, kind, name)).fetchone()
            current = _resource(row) if row else None
            spec = change(current)
            if spec is None:
                return current
            now = time.time()
            new_state = state or (current.state if current else "active")
            new_stack = current.stack if current and not (claim and stack) else \
                (stack or "adhoc")
            db.execute(
                "INSERT INTO resources (uri, kind, name, stack, spec, uuid, state, created,"
                " updated) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?)"
                " ON CONFLICT (uri, kind, name) DO UPDATE SET stack=excluded.stack,"
                " spec=excluded.spec, state=excluded.state, updated=excluded.updated",
                (uri, kind, name, new_stack, json.dumps(spec, sort_keys=True), new_state,
                 now, now))
            return Resource(uri, kind, name, new_stack, spec,
                            current.uuid if current else None, new_state)

    def resources(self, uri: str | None = None, kind: str | None = None) -> list[Resource]:
        query, args = "SELECT * FROM resources WHERE 1=1", []
        if uri:
            query, args = query + " AND uri=?", args + [uri]
        if kind:
            query, args = query + " AND kind=?", args + [kind]
        with self._lock:
            rows = self._db.execute(query + " ORDER BY kind, name", args).fetchall()
        return [_resource(r) for r in rows]

    # ----- stacks ---------------------------------------------------------------------------
    def put_stack(self, name: str, source: str) -> None:
        """Record stack `name` and the cell text it was last applied from."""
        with self._write() as db:
            db.execute("INSERT INTO stacks (name, created, source) VALUES (?, ?, ?)"
                       " ON CONFLICT (name) DO UPDATE SET source=excluded.source",
                       (name, time.time(), source))

    def remove_stack(self, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM stacks WHERE name=?", (name,))

    def stacks(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM stacks ORDER BY name").fetchall()
        return [dict(r) for r in rows]

    # ----- metric samples (monitoring) ---------------------------------------------------
    SAMPLE_FIELDS = ("cpu", "mem_used", "disk_rd", "disk_wr", "net_rx", "net_tx")

    def add_samples(self, uri: str, rows: list[tuple]) -> None:
        """Append samples in one transaction: rows of (name, t, cpu, mem_used, disk_rd,
        disk_wr, net_rx, net_tx); rates in %/bytes/bytes per second."""
        if not rows:
            return
        with self._write() as db:
            db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [(uri, *row) for row in rows])

    def samples(self, uri: str, name: str, since: float = 0.0) -> list[dict]:
        """Samples of instance `name` taken at or after `since` (epoch seconds), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM samples WHERE uri=? AND name=? AND t>=? ORDER BY t",
                (uri, name, since)).fetchall()
        return [dict(r) for r in rows]

    def prune_samples(self, before: float) -> int:
        """Drop samples older than `before`; returns how many."""
        with self._write() as db:
            return db.execute("DELETE FROM samples WHERE t<?", (before,)).rowcount

    def samples_after(self, uri: str, names: list[str], after: float) -> list[dict]:
        """Samples of any of `names` taken after `after`, oldest first (one query)."""
        marks = ",".join("?" * len(names))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM samples WHERE uri=? AND name IN ({marks}) AND t>? "
                "ORDER BY t", (uri, *names, after)).fetchall()
        return [dict(r) for r in rows]

    # ----- the host agent: one process per URI samples, scales and supervises -------------
    def claim_agent(self, uri: str, pid: int, grace: float) -> dict | None:
        """Register `pid` as the agent of `uri`, unless another live one holds it: then
        return that one's row and register nothing. `grace`: seconds a heartbeat counts."""
        now = time.time()
        with self._write() as db:
            row = db.execute("SELECT * FROM agents WHERE uri=?", (uri,)).fetchone()
            if row and row["pid"] != pid and row["beat"] >= now - row["grace"] and \
                    _alive(row["pid"]):
                return dict(row)
            db.execute("INSERT OR REPLACE INTO agents (uri, pid, started, beat, grace) "
                       "VALUES (?, ?, ?, ?, ?)", (uri, pid, now, now, grace))
        return None

    def beat_agent(self, uri: str, pid: int, states: dict | None = None,
                   note: str | None = None) -> bool:
        """The agent's heartbeat (and the instance states it saw); False if the row is
        no longer `pid`'s (another agent took over, or `host down` released it)."""
        sets, args = ["beat=?"], [time.time()]
        if states is not None:
            sets, args = sets + ["states=?"], args + [json.dumps(states, sort_keys=True)]
        if note is not None:
            sets, args = sets + ["note=?"], args + [note]
        with self._write() as db:
            return db.execute(f"UPDATE agents SET {', '.join(sets)} WHERE uri=? AND pid=?",
                              (*args, uri, pid)).rowcount == 1

    def release_agent(self, uri: str, pid: int) -> None:
        with self._write() as db:
            db.execute("DELETE FROM agents WHERE uri=? AND pid=?", (uri, pid))

    def agent(self, uri: str) -> dict | None:
        """The agent serving `uri` if its heartbeat is recent, else None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM agents WHERE uri=?", (uri,)).fetchone()
        if row is None or row["beat"] < time.time() - row["grace"]:
            return None
        return {**dict(row), "states": json.loads(row["states"])}

    def watch(self, uri: str, names: list[str], until: float) -> None:
        """Ask the agent to sample `names` until `until` (a lease the kernel renews)."""
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO watches VALUES (?, ?, ?)",
                           [(uri, n, until) for n in names])

    def unwatch(self, uri: str, names: list[str]) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM watches WHERE uri=? AND name=?",
                           [(uri, n) for n in names])

    def watched(self, uri: str) -> list[str]:
        """Names some kernel asked the agent to sample, whose lease has not ended."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT name FROM watches WHERE uri=? AND "
                                    "until>? ORDER BY name", (uri, time.time())).fetchall()
        return [r[0] for r in rows]


class Records:
    """The inventory as one cloud sees it: every row and operation carries the cloud's
    key (its URI), given once here instead of at every call."""

    def __init__(self, inventory: Inventory, key: str):
        self.inventory = inventory
        self.key = key

    @property
    def rebuilt(self) -> bool:
        return self.inventory.rebuilt

    @property
    def path(self) -> Path:
        return self.inventory.path

    # operations log (ids are unique across clouds)
    def begin(self, verb: str, kind: str, name: str, **args) -> int:
        return self.inventory.begin(self.key, verb, kind, name, **args)

    def operation(self, verb: str, kind: str, name: str, **args):
        return self.inventory.operation(self.key, verb, kind, name, **args)

    def finish(self, op_id: int, result: str = "ok", detail: str = "") -> None:
        self.inventory.finish(op_id, result, detail)

    def resolve(self, op_id: int, result: str, detail: str = "",
                was: tuple[str, ...] = ("started",)) -> bool:
        return self.inventory.resolve(op_id, result, detail, was)

    def operation_by_id(self, op_id: int) -> dict | None:
        return self.inventory.operation_by_id(op_id)

    def operations(self, limit: int = 50) -> list[dict]:
        return self.inventory.operations(limit)

    def unfinished(self) -> list[dict]:
        return self.inventory.unfinished()

    def stale(self) -> list[dict]:
        return self.inventory.stale()

    # stacks (the cell each was last applied from)
    def stacks(self) -> list[dict]:
        return self.inventory.stacks()

    def put_stack(self, name: str, source: str) -> None:
        self.inventory.put_stack(name, source)

    def remove_stack(self, name: str) -> None:
        self.inventory.remove_stack(name)

    # resources
    def put(self, kind: str, name: str, *, state: str, spec: dict | None = None,
            uuid: str | None = None, stack: str = "adhoc") -> None:
        self.inventory.put(self.key, kind, name, state=state, spec=spec, uuid=uuid,
                           stack=stack)

    def set_state(self, kind: str, name: str, state: str) -> None:
        self.inventory.set_state(self.key, kind, name, state)

    def remove(self, kind: str, name: str) -> None:
        self.inventory.remove(self.key, kind, name)

    def update(self, kind: str, name: str, change, **kwargs) -> Resource | None:
        return self.inventory.update(self.key, kind, name, change, **kwargs)

    def all(self, kind: str | None = None) -> list[Resource]:
        return self.inventory.resources(self.key, kind)

    def get(self, kind: str, name: str) -> Resource | None:
        return next((r for r in self.all(kind) if r.name == name), None)

    # monitoring samples
    def add_samples(self, rows: list[tuple]) -> None:
        self.inventory.add_samples(self.key, rows)

    def samples(self, name: str, since: float = 0.0) -> list[dict]:
        return self.inventory.samples(self.key, name, since)

    def prune_samples(self, before: float) -> int:
        """Drop every cloud's samples older than `before` (they are kept for a day)."""
        return self.inventory.prune_samples(before)

    def samples_after(self, names: list[str], after: float) -> list[dict]:
        return self.inventory.samples_after(self.key, names, after)

    # the host agent serving this cloud's URI
    def agent(self) -> dict | None:
        return self.inventory.agent(self.key)

    def agent_serves(self) -> bool:
        """Whether another process, the host agent, samples, scales and supervises for
        this cloud now (so this one must not)."""
        row = self.inventory.agent(self.key)
        return row is not None and row["pid"] != os.getpid()

    def watch(self, names: list[str], until: float) -> None:
        self.inventory.watch(self.key, names, until)

    def unwatch(self, names: list[str]) -> None:
        self.inventory.unwatch(self.key, names)

    def watched(self) -> list[str]:
        return self.inventory.watched(self.key)
