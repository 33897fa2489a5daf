"""The results store: two processes writing at once leave every run and an intact database."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from trevo.arena.store import Run, Store


def _writer(path: str, prefix: str, n: int) -> None:
    store = Store(path)
    for i in range(n):
        store.add(Run(key=f"{prefix}{i}", sweep="s", label=prefix, family="f", task="t", seed=i, lr=0.1,
                      status="pending", config={}))
        store.update(f"{prefix}{i}", status="done", val={"loss": float(i)})


@pytest.mark.slow
def test_two_writers_do_not_corrupt_the_store(tmp_path):
    path = str(tmp_path / "db.sqlite")
    Store(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, p, 40)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    runs = Store(path).runs()
    assert len(runs) == 80 and all(r.status == "done" for r in runs)
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_store_written_before_state_bytes_gains_the_column(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the runs table as it was, without state_bytes
        db.execute("CREATE TABLE runs (key TEXT PRIMARY KEY, sweep TEXT NOT NULL, label TEXT NOT NULL, "
                   "family TEXT NOT NULL, task TEXT NOT NULL, seed INTEGER NOT NULL, lr REAL NOT NULL, "
                   "status TEXT NOT NULL, config TEXT NOT NULL, metric TEXT, higher_is_better INTEGER, val TEXT, "
                   "test TEXT, curves TEXT, params INTEGER, flops_per_token REAL, tokens_per_s REAL, "
                   "peak_mem_mb REAL, wall_s REAL, versions TEXT, error TEXT, pid INTEGER, updated REAL)")
        db.execute("INSERT INTO runs (key, sweep, label, family, task, seed, lr, status, config) "
                   "VALUES ('a', 's', 'l', 'f', 't', 0, 0.1, 'done', '{}')")
    store = Store(path)
    assert store.get("a").state_bytes is None
    store.update("a", state_bytes=1234)
    assert store.get("a").state_bytes == 1234
