"""The arena's results store: one SQLite file (stdlib ``sqlite3``), one row per run.

A run's key is the hash of its full resolved config (seed and learning rate included), so the same
run in two sweeps is one row, and re-running a sweep skips what is done. WAL journaling and
``BEGIN IMMEDIATE`` transactions let several worker processes write at once without corrupting it.

A store may hold many sweeps, and one sweep run again after a change of its config: each sweep row
keeps the keys of its latest plan, and a report reads those runs only. A file that is not a readable
store (corrupt, truncated, not SQLite, read-only) is a ``StoreError`` naming the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trevo.checkpoint import pid_alive
from trevo.errors import TrevoError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,          -- hash of the full resolved config
    sweep TEXT NOT NULL,
    label TEXT NOT NULL,           -- the variant's label, e.g. the mixer name
    family TEXT NOT NULL,
    task TEXT NOT NULL,            -- the task variant's label
    seed INTEGER NOT NULL,
    lr REAL NOT NULL,
    status TEXT NOT NULL,          -- pending | running | done | failed
    config TEXT NOT NULL,          -- JSON of the resolved RunConfig
    metric TEXT,                   -- name of the primary metric
    higher_is_better INTEGER,
    val TEXT,                      -- JSON: final validation metrics
    test TEXT,                     -- JSON: test metrics, evaluated once for chosen configs
    curves TEXT,                   -- JSON: {"losses": [...], "history": [...]}
    params INTEGER,
    flops_per_token REAL,
    tokens_per_s REAL,
    peak_mem_mb REAL,
    state_bytes INTEGER,           -- generation state after a prefill of the task's length (KV cache or RNN state)
    wall_s REAL,
    versions TEXT,                 -- JSON: trevo, torch, device
    error TEXT,
    pid INTEGER,
    updated REAL
);
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY,
    baseline TEXT,
    description TEXT,
    spec TEXT,                     -- JSON: the sweep as written
    keys TEXT,                     -- JSON: the run keys of its latest plan
    planned REAL                   -- when that plan was made
);
"""
# Columns added to a table after the first release: (table, column, type), added to older stores.
ADDED_COLUMNS = (("sweeps", "keys", "TEXT"), ("sweeps", "planned", "REAL"), ("runs", "state_bytes", "INTEGER"))
# SQLite's result codes for a file that cannot serve as the store (as opposed to a bug in a query).
UNUSABLE = {"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_FULL",
            "SQLITE_PERM", "SQLITE_AUTH"}


class StoreError(TrevoError, OSError):
    """A results store that cannot be read or written."""

JSON_FIELDS = ("config", "val", "test", "curves", "versions")


@dataclass
class Run:
    key: str
    sweep: str
    label: str
    family: str
    task: str
    seed: int
    lr: float
    status: str
    config: dict[str, Any]
    metric: str | None = None
    higher_is_better: bool | None = None
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    curves: dict[str, Any] | None = None
    params: int | None = None
    flops_per_token: float | None = None
    tokens_per_s: float | None = None
    peak_mem_mb: float | None = None
    state_bytes: int | None = None
    wall_s: float | None = None
    versions: dict[str, Any] | None = None
    error: str | None = None
    pid: int | None = None
    updated: float | None = None


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a results store (OUT/arena.sqlite)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create {self.path.parent} for the results store: {e.strerror}") from None
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            for table, column, kind in ADDED_COLUMNS:
                if column not in {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.row_factory = sqlite3.Row
            try:
                yield db
            finally:
                db.close()
        except sqlite3.DatabaseError as e:
            name = getattr(e, "sqlite_errorname", "")
            # sqlite_errorname exists from Python 3.11; before, the message tells the same.
            if type(e) is sqlite3.DatabaseError or name in UNUSABLE or any(
                    word in str(e) for word in ("malformed", "readonly", "unable to open", "disk I/O")):
                raise StoreError(f"{self.path} is not a usable results store ({e}); move it aside to start a new "
                                 f"one, or point to another") from None
            raise

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def add(self, run: Run) -> None:
        """Insert a planned run unless a row with its key exists (done runs are never redone)."""
        row = _encode(run)
        with self._transaction() as db:
            db.execute(f"INSERT OR IGNORE INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       list(row.values()))

    def update(self, key: str, **fields: Any) -> None:
        fields = {k: json.dumps(v) if k in JSON_FIELDS and v is not None else v for k, v in fields.items()}
        fields["updated"] = time.time()
        with self._transaction() as db:
            db.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in fields)} WHERE key = ?",
                       [*fields.values(), key])

    def claim(self, key: str) -> bool:
        """Mark a run as running by this process, unless it is done or running in a live process."""
        with self._transaction() as db:
            row = db.execute("SELECT status, pid FROM runs WHERE key = ?", (key,)).fetchone()
            if row is None or row["status"] == "done":
                return False
            if row["status"] == "running" and row["pid"] and row["pid"] != os.getpid() and pid_alive(row["pid"]):
                return False
            db.execute("UPDATE runs SET status = 'running', pid = ?, error = NULL, updated = ? WHERE key = ?",
                       (os.getpid(), time.time(), key))
            return True

    def add_sweep(self, name: str, baseline: str | None, description: str, spec: dict[str, Any],
                  keys: list[str]) -> None:
        """Record a sweep and the keys of the plan being run (replacing an earlier plan of the name)."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO sweeps (name, baseline, description, spec, keys, planned) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (name, baseline, description, json.dumps(spec), json.dumps(keys),
                                                    time.time()))

    def sweeps(self) -> list[dict[str, Any]]:
        """Every sweep, the most recently planned last."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM sweeps ORDER BY planned, name").fetchall()
        return [{**dict(r), "spec": _json(r["spec"], self.path) or {}, "keys": _json(r["keys"], self.path)}
                for r in rows]

    def get(self, key: str) -> Run | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        return _decode(row, self.path) if row else None

    def count(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def runs(self, sweep: str | None = None, keys: list[str] | None = None) -> list[Run]:
        """All runs, or those recorded under ``sweep``, or those with one of ``keys``."""
        order = " ORDER BY task, label, lr, seed"
        with self._connect() as db:
            if keys is not None:
                db.execute("CREATE TEMP TABLE wanted (key TEXT PRIMARY KEY)")
                db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", [(k,) for k in keys])
                rows = db.execute("SELECT runs.* FROM runs JOIN wanted USING (key)" + order).fetchall()
            elif sweep is None:
                rows = db.execute("SELECT * FROM runs" + order).fetchall()
            else:
                rows = db.execute("SELECT * FROM runs WHERE sweep = ?" + order, (sweep,)).fetchall()
        return [_decode(r, self.path) for r in rows]


def _encode(run: Run) -> dict[str, Any]:
    row = dict(run.__dict__)
    for k in JSON_FIELDS:
        if row[k] is not None:
            row[k] = json.dumps(row[k])
    return row


def _json(text: str | None, path: Path) -> Any:
    try:
        return None if text is None else json.loads(text)
    except json.JSONDecodeError:
        raise StoreError(f"{path} holds a damaged row (invalid JSON); move it aside to start a new store") from None


def _decode(row: sqlite3.Row, path: Path) -> Run:
    data = dict(row)
    for k in JSON_FIELDS:
        data[k] = _json(data[k], path)
    if data["higher_is_better"] is not None:
        data["higher_is_better"] = bool(data["higher_is_better"])
    return Run(**data)
