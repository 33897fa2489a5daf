"""The arena report renders from a fixture store: labels escaped, significance marks, controlled
settings listed per variant, JSON and CSV exports."""

from __future__ import annotations

import json

from trevo.arena.report import write_report
from trevo.arena.runner import DB_NAME
from trevo.arena.store import Run, Store
from trevo.config import RunConfig


def _fake_run(store: Store, label: str, seed: int, value: float, task: str = "byte_lm") -> None:
    cfg = RunConfig().override(["model.position.name=rope"] if label == "close" else []).to_dict()
    store.add(Run(key=f"{label}-{seed}", sweep="fixture", label=label, family="fam<ily>", task=task, seed=seed,
                  lr=1e-3, status="pending", config=cfg))
    store.update(f"{label}-{seed}", status="done", metric="bpb", higher_is_better=0,
                 val={"bpb": value + 0.01}, test={"bpb": value}, params=1000, tokens_per_s=100.0 * (seed + 1),
                 peak_mem_mb=10.0, flops_per_token=1e6, wall_s=1.0, curves={"losses": [3.0, 2.0, 1.5], "history": []},
                 versions={"torch": "x"})


def test_report_renders_from_a_fixture_and_escapes_labels(tmp_path):
    store = Store(tmp_path / DB_NAME)
    evil = "<script>alert('x')</script>"
    for seed, (a, b, c) in enumerate([(2.0, 2.5, 2.01), (2.1, 2.6, 1.99), (1.9, 2.4, 2.0)]):
        _fake_run(store, "softmax_attention", seed, a)
        _fake_run(store, evil, seed, b)
        _fake_run(store, "close", seed, c)
    store.add_sweep("fixture", "softmax_attention", "", {}, [r.key for r in store.runs()])
    paths = write_report(tmp_path / DB_NAME)
    page = paths["html"].read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "data:image/png;base64," in page
    md = paths["md"].read_text()
    assert "(n.s.)" in md  # "close" is within noise of the baseline
    # Only "close" uses RoPE: the position is not reported as shared by every run.
    controlled = next(line for line in md.splitlines() if line.startswith("- byte_lm: "))
    assert "norm varies" not in controlled and "position varies (" in controlled and 'close: "rope"' in controlled
    evil_line = next(line for line in md.splitlines() if "alert" in line and line.startswith("|"))
    assert "n.s." not in evil_line and "+0.5000" in evil_line
    exported = json.loads(paths["json"].read_text())
    assert len(exported["runs"]) == 9
    assert exported["leaderboards"]["byte_lm"][0]["label"] in ("softmax_attention", "close")
    assert paths["csv"].read_text().count("\n") == 10


def test_the_versions_line_lists_each_code_version_the_runs_recorded():
    """A store resumed under newer code holds runs of two commits: the report names both, with counts,
    instead of the first run's version alone."""
    from types import SimpleNamespace

    from trevo.arena.report import versions_line

    old = {"trevo": "0.1.0", "git_commit": "aaaaaaaaaa", "torch": "2.13.0", "cuda": None, "defaults": {"x": 1}}
    new = {"trevo": "0.1.0", "git_commit": "bbbbbbbbbb", "torch": "2.14.0", "cuda": None}
    same = [SimpleNamespace(versions=old), SimpleNamespace(versions=dict(old))]
    assert versions_line(same) == "Versions: trevo 0.1.0, git_commit aaaaaaa, torch 2.13.0."
    mixed = [*same, SimpleNamespace(versions=new), SimpleNamespace(versions=None)]
    assert versions_line(mixed) == ("Versions: trevo 0.1.0; differing between runs: git_commit aaaaaaa, torch 2.13.0 "
                                    "(2 runs); git_commit bbbbbbb, torch 2.14.0 (1 run).")
    assert versions_line([SimpleNamespace(versions=None)]) == "Versions: not recorded."


def test_a_metric_s_breakdowns_get_their_own_table_with_intervals(tmp_path):
    store = Store(tmp_path / DB_NAME)
    heads = {"memory": [1.90, 1.92, 1.94], "none": [2.10, 2.12, 2.14]}
    for label, values in heads.items():
        for seed, head in enumerate(values):
            _fake_run(store, label, seed, head + 0.05)
            store.update(f"{label}-{seed}", test={"bpb": head + 0.05, "bpb_head": head, "bpb_tail": 2.0,
                                                  "accuracy": 0.5})
    store.add_sweep("fixture", "none", "", {}, [r.key for r in store.runs()])
    md = write_report(tmp_path / DB_NAME, plots=False)["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| variant | seeds | test bpb"))
    assert header == "| variant | seeds | test bpb | bpb head | bpb tail |"  # accuracy is no part of bpb
    memory = next(line for line in md.splitlines() if line.startswith("| memory | 3 |"))
    # mean 1.92, sample sd 0.02, t(2) 4.303: half width 4.303 · 0.02 / √3 = 0.0497
    assert "| 1.9200 ± 0.0497 | 2.0000 ± 0.0000 |" in memory


def test_a_task_without_breakdowns_has_no_parts_table(tmp_path):
    store = Store(tmp_path / DB_NAME)
    for seed in range(2):
        _fake_run(store, "softmax_attention", seed, 2.0 + seed / 10)
    store.add_sweep("fixture", "softmax_attention", "", {}, [r.key for r in store.runs()])
    assert "by part" not in write_report(tmp_path / DB_NAME, plots=False)["md"].read_text()
