"""A store holds many sweeps and plans; a report shows one plan and never pools different configs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trevo.arena.leaderboard import ReportError, leaderboard, select, variant_key
from trevo.arena.report import leaderboard_text, write_report
from trevo.arena.runner import DB_NAME, run_sweep
from trevo.arena.store import Run, Store
from trevo.arena.sweep import parse_sweep
from trevo.config import RunConfig
from trevo.plotting import MissingExtraError

ROOT = Path(__file__).resolve().parents[2]
BASE = {"model": {"n_layers": 1, "d_model": 16}, "task": {"name": "byte_lm", "seq_len": 16},
        "train": {"steps": 2, "batch_size": 2, "eval_every": 2, "eval_batches": 1, "checkpoint_every": 2,
                  "warmup_steps": 1}}


def _run(store: Store, label: str, seed: int, steps: int, value: float, sweep: str = "s") -> str:
    cfg = RunConfig().override([f"train.steps={steps}", f"train.seed={seed}"])
    key = f"{sweep}-{label}-{seed}-{steps}"
    store.add(Run(key=key, sweep=sweep, label=label, family="f", task="byte_lm", seed=seed, lr=1e-3,
                  status="pending", config=cfg.to_dict()))
    store.update(key, status="done", metric="bpb", higher_is_better=0, val={"bpb": value}, test={"bpb": value},
                 params=100, tokens_per_s=10.0, peak_mem_mb=1.0, flops_per_token=1.0, wall_s=1.0,
                 curves={"losses": [1.0], "history": []})
    return key


def test_a_rerun_with_another_config_shows_only_its_own_plan(tmp_path):
    store = Store(tmp_path / DB_NAME)
    old = [_run(store, label, seed, 20, 2.0 + seed) for label in ("a", "b") for seed in (0, 1)]
    store.add_sweep("s", "a", "", {}, old)
    new = [_run(store, label, seed, 40, 1.0 + seed / 10) for label in ("a", "b") for seed in (0, 1)]
    store.add_sweep("s", "a", "", {}, new)
    chosen = select(store)
    assert sorted(r.key for r in chosen.runs) == sorted(new)
    assert "4 other runs (earlier plans)" in chosen.note
    rows = leaderboard(chosen.runs, chosen.baseline)["byte_lm"]
    assert [(r.label, r.seeds) for r in rows] == [("a", 2), ("b", 2)]
    assert rows[0].test.mean == pytest.approx(1.05)
    md = write_report(tmp_path / DB_NAME)["md"].read_text()
    assert "40 steps" in md and "20 steps" not in md and "Sweep 's': its latest plan, 4 runs." in md


def test_runs_of_different_configs_are_never_pooled(tmp_path):
    """A store with no plan (or a plan that, by some error, named two configs of one label): each
    config is its own row, the label marked with its variant key."""
    store = Store(tmp_path / DB_NAME)
    for seed in (0, 1):
        _run(store, "a", seed, 20, 2.0)
        _run(store, "a", seed, 40, 1.0)
    boards = leaderboard(store.runs(), None)
    rows = boards["byte_lm"]
    assert sorted((r.seeds, r.test.mean) for r in rows) == [(2, 1.0), (2, 2.0)]
    assert len({r.variant for r in rows}) == 2
    text = leaderboard_text(tmp_path / DB_NAME)
    assert text.startswith("All 4 runs of the store (it records no sweep).")
    assert f"a [{rows[0].variant}]" in text and f"a [{rows[1].variant}]" in text
    assert variant_key(store.runs()[0].config) == variant_key(
        RunConfig().override(["train.steps=20", "train.seed=5", "train.lr=0.5"]).to_dict())


def test_a_report_shows_the_sweep_it_is_asked_for(tmp_path):
    store = Store(tmp_path / DB_NAME)
    store.add_sweep("first", None, "", {}, [_run(store, "a", 0, 20, 2.0, sweep="first")])
    store.add_sweep("second", None, "", {}, [_run(store, "b", 0, 20, 3.0, sweep="second")])
    assert [r.label for r in select(store).runs] == ["b"]  # the most recently planned
    chosen = select(store, "first")
    assert [r.label for r in chosen.runs] == ["a"] and "or the sweeps 'second'" in chosen.note
    with pytest.raises(ReportError, match="no sweep 'third'; its sweeps: first, second"):
        select(store, "third")
    with pytest.raises(ReportError, match="baseline 'zzz' is not a variant of sweep 'first'; its variants: a"):
        write_report(tmp_path / DB_NAME, sweep="first", baseline="zzz")


def test_sweep_rerun_end_to_end(tmp_path):
    spec = {"name": "tiny", "base": BASE, "variants": ["softmax_attention"], "tasks": ["byte_lm"], "seeds": [0]}
    run_sweep(parse_sweep(spec), tmp_path, log=lambda s: None)
    spec["base"] = {**BASE, "train": {**BASE["train"], "steps": 3}}
    run_sweep(parse_sweep(spec), tmp_path, log=lambda s: None)
    text = leaderboard_text(tmp_path / DB_NAME)
    assert "The store holds 1 other runs (earlier plans)" in text
    chosen = select(Store(tmp_path / DB_NAME))
    assert [(r.label, r.seeds) for r in leaderboard(chosen.runs, None)["byte_lm"]] == [("softmax_attention", 1)]
    md = write_report(tmp_path / DB_NAME, plots=False)["md"].read_text()
    assert "3 steps × batch 2" in md and "2 steps" not in md


def test_markdown_report_escapes_labels_and_names(tmp_path):
    store = Store(tmp_path / DB_NAME)
    evil = "*bold* <img src=x onerror=alert(1)> [link](http://x) a|b"
    keys = [_run(store, evil, 0, 20, 2.0), _run(store, "plain_name", 0, 20, 2.5)]
    store.update(keys[1], status="failed", error="<b>boom</b> | _x_")
    store.add_sweep("s", None, "", {}, keys)
    md = write_report(tmp_path / DB_NAME, plots=False)["md"].read_text()
    assert not re.search(r"(?<!\\)[<>]", md) and not re.search(r"(?<!\\)\]\(", md)  # no live HTML or link
    assert r"\*bold\* \<img src=x onerror=alert(1)\> \[link\](http://x) a\|b" in md
    assert r"\<b\>boom\</b\> \| \_x\_" in md


def test_reports_without_matplotlib(tmp_path, monkeypatch, capsys):
    from trevo import plotting
    from trevo.cli import main

    store = Store(tmp_path / DB_NAME)
    store.add_sweep("s", None, "", {}, [_run(store, "a", 0, 20, 2.0)])
    monkeypatch.setattr(plotting, "available", lambda: False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    paths = write_report(tmp_path / DB_NAME)
    assert "Plots are omitted: matplotlib is not installed" in paths["html"].read_text()
    assert "data:image/png" not in paths["html"].read_text()
    with pytest.raises(MissingExtraError, match=r"pip install 'trevo\[report\]'"):
        plotting.pyplot()
    assert main(["bench", "mixers", "--out", str(tmp_path / "bench")]) == 2
    assert "pip install 'trevo[report]', or pass --no-plots" in capsys.readouterr().err


def test_piping_the_arena_into_head_does_not_stop_the_sweep(tmp_path):
    spec = {"name": "tiny", "base": BASE, "variants": ["softmax_attention", "rwkv4"], "tasks": ["byte_lm"]}
    (tmp_path / "sweep.yaml").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = f"{sys.executable} -m trevo.cli arena sweep.yaml --out out --no-report | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.startswith("arena 'tiny': 2 runs"), done.stderr
    assert [r.status for r in Store(tmp_path / "out" / DB_NAME).runs()] == ["done", "done"]


def _width_run(store: Store, d_model: int, lr: float, val: float, test: float, label: str = "attention") -> str:
    cfg = RunConfig().override([f"model.d_model={d_model}", f"train.lr={lr}", "task.name=mqar", "task.seq_len=64",
                                "task.n_pairs=4", "task.vocab_size=128", "task.train_size=100"])
    key = f"w-{label}-{d_model}-{lr}"
    store.add(Run(key=key, sweep="z", label=label, family="f", task="T64", seed=0, lr=lr, status="pending",
                  config=cfg.to_dict()))
    store.update(key, status="done", metric="accuracy", higher_is_better=1, val={"accuracy": val},
                 test={"accuracy": test}, params=100, tokens_per_s=10.0, peak_mem_mb=1.0, flops_per_token=1.0,
                 wall_s=1.0, curves={"losses": [1.0], "history": []})
    return key


def test_the_width_grid_keeps_each_cells_own_best_learning_rate_and_the_report_draws_it(tmp_path):
    """Zoology's selection: the best of the learning rates in every (variant, task, width) cell, on
    validation, whichever lr wins in the other cells; the published table is printed beside the rows."""
    from trevo.arena.leaderboard import width_grid

    store = Store(tmp_path / DB_NAME)
    keys = [_width_run(store, 64, 1e-3, val=0.9, test=0.85), _width_run(store, 64, 1e-2, val=0.5, test=0.99),
            _width_run(store, 128, 1e-3, val=0.6, test=0.6), _width_run(store, 128, 1e-2, val=0.95, test=0.93)]
    published = {"T64": {"source": "Arora et al. 2023, Figure 2", "rows": {"attention (d=64)": 100.0}}}
    store.add_sweep("z", None, "", {"published": published}, keys)
    grid = width_grid(leaderboard(select(store).runs, None))
    cells = grid["T64"]["attention"]
    assert [(d, cells[d].lr, cells[d].test.mean) for d in cells] == [(64, 1e-3, 0.85), (128, 1e-2, 0.93)]
    # In a width grid each row is compared with the baseline at its own width.
    other = _width_run(store, 64, 1e-3, val=0.2, test=0.25, label="mamba")
    store.add_sweep("z", "attention", "", {"published": published}, [*keys, other])
    mamba = next(r for r in leaderboard(select(store).runs, "attention")["T64"] if r.label == "mamba")
    assert mamba.delta == pytest.approx(0.25 - 0.85)
    md = write_report(tmp_path / DB_NAME)["md"].read_text()
    assert "| attention | 0.8500 (lr 0.001) | 0.9300 (lr 0.01) |" in md
    assert "Arora et al. 2023, Figure 2" in md and "| attention d=64 | trevo (this sweep) | 85.00 |" in md
    assert "a fixed training set of 100 examples per seed" in md
    assert (tmp_path / "widths.png").read_bytes()[:4] == b"\x89PNG"


def _hyper_run(store: Store, label: str, task: str, lr: float, wd: float, val: float, test: float) -> str:
    cfg = RunConfig().override([f"train.lr={lr}", f"train.weight_decay={wd}"])
    key = f"{label}-{task}-{lr}-{wd}"
    store.add(Run(key=key, sweep="s", label=label, family="f", task=task, seed=0, lr=lr, status="pending",
                  config=cfg.to_dict()))
    store.update(key, status="done", metric="accuracy", higher_is_better=1, val={"accuracy": val},
                 test={"accuracy": test}, params=100, tokens_per_s=10.0, peak_mem_mb=1.0, flops_per_token=1.0,
                 wall_s=1.0, state_bytes=1024.0 * len(task), curves={"losses": [1.0], "history": []})
    return key


def test_the_best_lr_and_weight_decay_pair_is_kept_on_validation(tmp_path):
    store = Store(tmp_path / DB_NAME)
    for (lr, wd), val in {(1e-3, 0.0): 0.5, (1e-3, 0.1): 0.9, (2e-3, 0.0): 0.7, (2e-3, 0.1): 0.6}.items():
        _hyper_run(store, "a", "t", lr, wd, val, test=val - 0.1)
    (row,) = leaderboard(store.runs(), None)["t"]
    assert (row.lr, row.weight_decay, row.seeds) == (1e-3, 0.1, 1) and row.test.mean == pytest.approx(0.8)
    assert variant_key(store.runs()[0].config) == variant_key(store.runs()[1].config)  # one variant, 4 runs


def test_the_report_averages_each_variant_over_a_tasks_difficulty_settings(tmp_path):
    """MAD's score, by hand: a task's score is the mean of its settings' test metrics; the overall one the
    mean over tasks, only for a variant that has every setting."""
    store = Store(tmp_path / DB_NAME)
    tests = {("a", "r baseline"): 0.9, ("a", "r seq_len=64"): 0.5, ("a", "c"): 0.4,
             ("b", "r baseline"): 0.7, ("b", "c"): 0.8}  # b never finished "r seq_len=64"
    keys = [_hyper_run(store, label, task, 1e-3, 0.0, value, value) for (label, task), value in tests.items()]
    spec = {"tasks": [{"label": "r", "set": {"task.name": "mad_recall"}, "vary": [{"task.seq_len": 64}]}, "c"]}
    store.add_sweep("s", None, "", spec, keys)
    from trevo.arena.leaderboard import group_scores, overall
    from trevo.arena.sweep import task_groups

    scores = group_scores(leaderboard(store.runs(), None), task_groups(spec))
    assert scores["a"]["r"].mean == pytest.approx(0.7) and scores["a"]["r"].state_bytes == 1024.0 * 12
    assert overall(scores["a"], ["r", "c"]) == pytest.approx((0.7 + 0.4) / 2)
    assert (scores["b"]["r"].done, scores["b"]["r"].total) == (1, 2) and overall(scores["b"], ["r", "c"]) is None
    md = write_report(tmp_path / DB_NAME, plots=False)["md"].read_text()
    section = md.split("## Averaged over difficulty settings")[1]
    assert "| variant | r (2 settings) | c (1 setting) | mean over tasks | params | state KB (largest) |" in section
    assert "| a | 0.7000 | 0.4000 | 0.5500 | 100 | 12.0 |" in section
    assert "| b | 0.7000 (1 of 2) | 0.8000 | — | 100 | 10.0 |" in section


def test_a_subset_with_one_setting_per_task_still_gets_the_averaged_table_and_its_published_scores(tmp_path):
    # The mad preset's CPU subset runs each task's baseline setting only; its MAD score is the mean of those.
    store = Store(tmp_path / DB_NAME)
    keys = [_hyper_run(store, "a", f"{t} baseline", 1e-3, 0.0, v, v) for t, v in (("r", 0.9), ("c", 0.4))]
    spec = {"tasks": [{"label": t, "set": {"task.name": "mad_recall"}, "vary": [{"task.seq_len": 64}]} for t in "rc"],
            "published": {"r": {"source": "a figure", "rows": {"Hyena": 0.82}}}}
    store.add_sweep("s", None, "", spec, keys)
    md = write_report(tmp_path / DB_NAME, plots=False)["md"].read_text()
    section = md.split("## Averaged over difficulty settings")[1]
    assert "| variant | r (1 setting) | c (1 setting) | mean over tasks |" in section
    assert "| a | 0.9000 | 0.4000 | 0.6500 |" in section and "| Hyena | a figure | 0.82 |" in section
    # A sweep without difficulty groups has no such table.
    plain = Store(tmp_path / "plain" / DB_NAME)
    plain.add_sweep("s", None, "", {"tasks": ["t"]}, [_hyper_run(plain, "a", "t", 1e-3, 0.0, 0.5, 0.5)])
    assert "Averaged over" not in write_report(tmp_path / "plain" / DB_NAME, plots=False)["md"].read_text()


def test_a_papers_effects_are_set_beside_the_sweeps_and_each_is_judged_by_the_welch_test(tmp_path):
    """Narang et al.'s question, per row: the paper's change from its baseline (within the tolerance: none)
    against trevo's significant change, or its absence."""
    store = Store(tmp_path / DB_NAME)
    values = {"vanilla": [2.00, 2.01, 1.99], "better": [1.80, 1.81, 1.79], "same": [2.00, 2.02, 1.98],
              "worse": [2.30, 2.31, 2.29], "flat": [2.00, 2.03, 1.97]}
    keys = [_run(store, label, seed, 10, v) for label, vs in values.items() for seed, v in enumerate(vs)]
    rows = {"vanilla": 1.838, "better": 1.790, "same": 1.800, "worse": 1.700, "flat": 1.841}
    published = {"byte_lm": {"source": "a paper, Table 1", "baseline": "vanilla", "tolerance": 0.005, "rows": rows}}
    store.add_sweep("s", "vanilla", "", {"published": published}, keys)
    md = write_report(tmp_path / DB_NAME, plots=False)["md"].read_text()
    assert "the paper agrees with this sweep on 2 of 4 modifications" in md
    assert "| better | 1.79 | -0.048 (better) | 1.8000 ± 0.0248 | -0.2000 (better) | yes |" in md
    assert "| same | 1.8 | -0.038 (better) |" in md and "(n.s.) | not reproduced (n.s.) |" in md
    assert "| worse | 1.7 | -0.138 (better) | 2.3000 ± 0.0248 | +0.3000 (worse) | no (trevo: worse) |" in md
    assert "| flat | 1.841 | +0.003 (no change) |" in md and md.count("| yes |") == 2
    # Under another baseline the effects do not compare: the paper's numbers are listed as they are.
    other = write_report(tmp_path / DB_NAME, baseline="better", plots=False)["md"].read_text()
    assert "agrees with this sweep" not in other and "| flat | a paper, Table 1 | 1.841 |" in other
