"""The inventory's SQLite schema, as numbered migrations (nbcloud/inventory.py applies
those a file has not had yet, in one transaction)."""
from __future__ import annotations

SCHEMA_VERSION = 4
_MIGRATIONS = {
    1: """
    CREATE TABLE resources (
        uri TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        stack TEXT NOT NULL DEFAULT 'adhoc', spec TEXT NOT NULL DEFAULT '{}',
        uuid TEXT, state TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
        PRIMARY KEY (uri, kind, name));
    CREATE TABLE operations (
        id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, finished REAL,
        user TEXT NOT NULL, uri TEXT NOT NULL, verb TEXT NOT NULL, kind TEXT NOT NULL,
        name TEXT NOT NULL, args TEXT NOT NULL DEFAULT '{}', result TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '');
    CREATE TABLE stacks (name TEXT PRIMARY KEY, created REAL NOT NULL, source TEXT);
    """,
    # which process recorded an intent, so that recovery can tell an operation still under
    # way in another notebook from one whose process died before the outcome
    2: "ALTER TABLE operations ADD COLUMN pid INTEGER",
    # monitoring: one row per instance per tick, derived rates (monitor.py writes in batches)
    3: """
    CREATE TABLE samples (
        uri TEXT NOT NULL, name TEXT NOT NULL, t REAL NOT NULL,
        cpu REAL, mem_used REAL, disk_rd REAL, disk_wr REAL, net_rx REAL, net_tx REAL);
    CREATE INDEX samples_by_name ON samples (uri, name, t);
    """,
    # the host agent (nbcloud/agent/): which process serves a URI, its heartbeat and the
    # states it saw; the instances kernels asked it to sample, each until a lease ends
    4: """
    CREATE TABLE agents (
        uri TEXT PRIMARY KEY, pid INTEGER NOT NULL, started REAL NOT NULL,
        beat REAL NOT NULL, grace REAL NOT NULL, states TEXT NOT NULL DEFAULT '{}',
        note TEXT NOT NULL DEFAULT '');
    CREATE TABLE watches (uri TEXT NOT NULL, name TEXT NOT NULL, until REAL NOT NULL,
        PRIMARY KEY (uri, name));
    """,
}
