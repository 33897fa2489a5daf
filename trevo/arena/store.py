"""The arena's results store: one SQLite file (stdlib ``sqlite3``), one row per run.

A run's key is the hash of its full resolved config (seed and learning rate included), so the same
run in two sweeps is one row, and re-running a sweep skips what is done. WAL journaling and
``BEGIN IMMEDIATE`` transactions let several worker processes write at once without corrupting it.
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
    spec TEXT                      -- JSON: the sweep as written
);
"""

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
            if "state_bytes" not in columns:  # a store written before the column existed
                db.execute("ALTER TABLE runs ADD COLUMN state_bytes INTEGER")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

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
            if row["status"] == "running" and row["pid"] != os.getpid() and _alive(row["pid"]):
                return False
            db.execute("UPDATE runs SET status = 'running', pid = ?, error = NULL, updated = ? WHERE key = ?",
                       (os.getpid(), time.time(), key))
            return True

    def add_sweep(self, name: str, baseline: str | None, description: str, spec: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO sweeps (name, baseline, description, spec) VALUES (?, ?, ?, ?)",
                       (name, baseline, description, json.dumps(spec)))

    def sweeps(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM sweeps ORDER BY name").fetchall()
        return [{**dict(r), "spec": json.loads(r["spec"] or "{}")} for r in rows]

    def get(self, key: str) -> Run | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        return _decode(row) if row else None

    def runs(self, sweep: str | None = None) -> list[Run]:
        with self._connect() as db:
            if sweep is None:
                rows = db.execute("SELECT * FROM runs ORDER BY task, label, lr, seed").fetchall()
            else:
                rows = db.execute("SELECT * FROM runs WHERE sweep = ? ORDER BY task, label, lr, seed",
                                  (sweep,)).fetchall()
        return [_decode(r) for r in rows]


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


def _encode(run: Run) -> dict[str, Any]:
    row = dict(run.__dict__)
    for k in JSON_FIELDS:
        if row[k] is not None:
            row[k] = json.dumps(row[k])
    return row


def _decode(row: sqlite3.Row) -> Run:
    data = dict(row)
    for k in JSON_FIELDS:
        if data[k] is not None:
            data[k] = json.loads(data[k])
    if data["higher_is_better"] is not None:
        data["higher_is_better"] = bool(data["higher_is_better"])
    return Run(**data)
