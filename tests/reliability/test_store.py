"""A results store that is corrupt, truncated, not SQLite, read-only or from an older trevo."""

from __future__ import annotations

import json
import sqlite3

import pytest

from trevo.arena.runner import DB_NAME
from trevo.arena.store import Run, Store, StoreError
from trevo.cli import main
from trevo.config import RunConfig

CONFIG = RunConfig().to_dict()


def _filled(path) -> Store:
    store = Store(path)
    for i in range(200):
        store.add(Run(key=f"k{i}", sweep="s", label="m", family="f", task="t", seed=i, lr=1e-3, status="pending",
                      config=CONFIG))
    store.add_sweep("s", None, "", {}, [f"k{i}" for i in range(200)])
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store


@pytest.mark.parametrize("damage", ["garbage", "truncated", "header"])
def test_a_damaged_store_is_a_clear_error(damage, tmp_path, capsys):
    path = tmp_path / DB_NAME
    _filled(path)
    data = path.read_bytes()
    path.write_bytes({"garbage": bytes(range(256)) * 20, "truncated": data[:len(data) // 3],
                      "header": b"\0" * 100 + data[100:]}[damage])
    with pytest.raises(StoreError, match="is not a usable results store"):
        Store(path).runs()
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"trevo: error: {path} is not a usable results store") and "Traceback" not in err
    if damage != "garbage":
        return
    sweep = tmp_path / "sweep.yaml"
    base = {"model": {"n_layers": 1, "d_model": 16}, "task": {"name": "byte_lm", "seq_len": 16},
            "train": {"steps": 2, "warmup_steps": 1}}
    sweep.write_text(json.dumps({"name": "s", "variants": ["softmax_attention"], "tasks": ["byte_lm"], "base": base}))
    assert main(["arena", str(sweep), "--out", str(tmp_path), "--no-report"]) == 2
    assert "is not a usable results store" in capsys.readouterr().err


def test_a_damaged_row_is_a_clear_error(tmp_path):
    path = tmp_path / DB_NAME
    _filled(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE runs SET config = '{not json' WHERE key = 'k3'")
    with pytest.raises(StoreError, match="damaged row"):
        Store(path).runs()


def test_a_read_only_output_directory(read_only_dir, capsys):
    with pytest.raises(StoreError, match="is not a usable results store .*unable to open"):
        Store(read_only_dir / DB_NAME)
    with pytest.raises(StoreError, match="cannot create .* for the results store"):
        Store(read_only_dir / "sub" / DB_NAME)
    assert main(["arena", "quick", "--out", str(read_only_dir), "--no-report"]) == 2
    assert "not a usable results store" in capsys.readouterr().err


def test_an_older_store_gains_the_plan_columns(tmp_path):
    path = tmp_path / DB_NAME
    with sqlite3.connect(path) as db:  # the schema of the first release
        db.execute("CREATE TABLE sweeps (name TEXT PRIMARY KEY, baseline TEXT, description TEXT, spec TEXT)")
        db.execute("INSERT INTO sweeps VALUES ('old', NULL, '', '{}')")
    store = Store(path)
    assert store.sweeps() == [{"name": "old", "baseline": None, "description": "", "spec": {}, "keys": None,
                               "planned": None}]
    store.add_sweep("new", None, "", {}, ["a"])
    assert [s["name"] for s in store.sweeps()] == ["old", "new"]


def test_reports_into_a_read_only_folder(read_only_dir, tmp_path, capsys):
    _filled(tmp_path / DB_NAME)
    assert main(["report", str(tmp_path / DB_NAME), "--out", str(read_only_dir), "--no-plots"]) == 2
    assert f"cannot write the report into {read_only_dir}" in capsys.readouterr().err
    assert main(["bench", "mixers", "--mixers", "softmax_attention", "--lengths", "8", "--d-model", "8",
                 "--repeats", "1", "--in-process", "--no-plots", "--out", str(read_only_dir)]) == 2
    assert f"cannot write benchmark results into {read_only_dir}" in capsys.readouterr().err


def test_report_takes_the_arena_folder_or_its_store(tmp_path, capsys):
    _filled(tmp_path / DB_NAME)
    assert main(["report", str(tmp_path), "--no-plots"]) == 0  # the arena's --out folder
    assert (tmp_path / "report.md").is_file()
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert f"no results database at {tmp_path / 'empty' / DB_NAME}" in capsys.readouterr().err
