"""`kill -9` and the same command continues to the same final result: a subprocess test with a tiny
spec, killed twice (mid-way through generation 0's runs, and after generation 0 was saved), against an
uninterrupted run of the same spec."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.evolve.conftest import tiny_spec
from trevo.arena.store import Store
from trevo.config import RunConfig
from trevo.train import train

ROOT = Path(__file__).resolve().parents[2]
SPEC = tiny_spec(stages={"cheap": {"tasks": [{"label": "lm", "set": {"task.name": "byte_lm", "task.seq_len": 16}}],
                                   "steps": 4, "seeds": [0]},
                         "final": {"top": 1, "steps": 4, "seeds": [0, 1], "ablate": False}})


def _command(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "trevo.cli", "evolve", str(spec), "--out", str(out), "--workers", "2", "--no-report"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _done_runs(out: Path) -> int:
    try:
        with sqlite3.connect(out / "arena.sqlite", timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _kill_when(spec: Path, out: Path, ready, timeout: float = 300) -> None:
    proc = subprocess.Popen(_command(spec, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    start = time.time()
    while not ready() and proc.poll() is None and time.time() - start < timeout:
        time.sleep(0.2)
    assert proc.poll() is None, "the search ended before the kill point: make the spec bigger"
    os.killpg(proc.pid, signal.SIGKILL)  # the search and its workers, at once
    proc.wait()


def _result(out: Path) -> dict:
    state = json.loads((out / "evolve-evolution.json").read_text())
    archive = {h: {k: e[k] for k in ("line", "parents", "edit", "quality", "state_bytes", "crashed")}
               for h, e in state["archive"].items()}
    final = {h: r["quality"] for h, r in state["stages"]["final"]["genomes"].items()}
    return {"archive": archive, "population": state["population"], "history": state["history"],
            "final": final, "baseline": state["stages"]["final"]["baseline"]["quality"], "winner": state["winner"]}


@pytest.mark.slow
def test_kill_9_and_rerun_ends_where_an_uninterrupted_search_ends(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_command(spec, whole), env=_env(), check=True, capture_output=True, timeout=600)

    _kill_when(spec, killed, lambda: _done_runs(killed) >= 1)  # mid-way through generation 0
    _kill_when(spec, killed, lambda: (killed / "evolve-evolution.json").is_file())  # generation 0 saved
    done = subprocess.run(_command(spec, killed), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    assert _result(killed) == _result(whole)
    assert (killed / "winner.yaml").read_text() == (whole / "winner.yaml").read_text()

    # winner.yaml is a run config `trevo train` runs as it is: the same result as the winner's final run.
    cfg = RunConfig.load(whole / "winner.yaml")
    trained = train(cfg, tmp_path / "winner", progress=False)
    state = json.loads((whole / "evolve-evolution.json").read_text())
    runs = [Store(whole / "arena.sqlite").get(k) for k in state["stages"]["final"]["genomes"][state["winner"]]["runs"]]
    recorded = next(r for r in runs if r.seed == cfg.train.seed)
    assert trained["final"]["bpb"] == pytest.approx(recorded.val["bpb"], rel=1e-6)
