"""The arena: plan validation, width matching, the results store, crash/resume, the report."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
import time

import pytest

from trevo.arena.report import write_report
from trevo.arena.runner import DB_NAME, run_sweep
from trevo.arena.store import Run, Store
from trevo.arena.sweep import SweepError, load_sweep, match_width, parse_sweep, plan_sweep
from trevo.config import RunConfig
from trevo.registry import create, get, names

TINY_BASE = {
    "model": {"n_layers": 1, "d_model": 16},
    "task": {"name": "byte_lm", "seq_len": 16},
    "train": {"steps": 4, "batch_size": 2, "eval_every": 2, "eval_batches": 1, "checkpoint_every": 2,
              "warmup_steps": 1},
}


def tiny_sweep(**extra):
    spec = {"name": "tiny", "base": TINY_BASE, "variants": ["softmax_attention", "linear_attention"],
            "tasks": ["byte_lm"], "seeds": [0], "baseline": "softmax_attention", **extra}
    return parse_sweep(spec)


def test_quick_preset_plan_is_valid_and_broad():
    sweep = load_sweep("quick")
    plan = plan_sweep(sweep)
    families = {p.family for p in plan}
    tasks = {p.task for p in plan}
    assert len({p.label for p in plan}) >= 6 and len(families) >= 3, families
    assert len(tasks) >= 2 and any(p.config.task.name == "byte_lm" for p in plan)
    assert len(sweep.seeds) >= 2
    assert len({p.key for p in plan}) == len(plan)
    from trevo.arena.sweep import count_params
    from trevo.train import build

    for p in plan[:: len(sweep.seeds)]:
        task, _ = build(p.config)
        assert abs(count_params(p.config, task.info) - sweep.param_budget) <= 0.05 * sweep.param_budget, p.label


@pytest.mark.parametrize("preset", ["lm", "mqar", "recall", "lra", "standard", "perceiver", "perceiver_lm"])
def test_every_preset_plans(preset):
    plan = plan_sweep(load_sweep(preset))  # builds every model: each build-time check runs
    assert plan and len({p.key for p in plan}) == len(plan)
    if preset == "perceiver":
        assert {p.family for p in plan if p.config.model.arch != "metaformer"} == {"perceiver"}
        assert {p.config.task.options["permuted"] for p in plan} == {False, True}


CAUSAL_ON_LM = [n for n in names("mixer") if get("mixer", n).causal and not get("mixer", n).needs_2d]


@pytest.mark.parametrize("mixer", CAUSAL_ON_LM)
def test_width_matching_lands_within_5_percent(mixer):
    cfg = RunConfig().replace({"model.mixer.name": mixer, "model.n_layers": 2, "task.seq_len": 32,
                               "model.max_len": 32})
    task = create("task", "byte_lm", seq_len=32)
    for budget in (250_000, 600_000):
        matched, params = match_width(cfg, task.info, budget)
        assert abs(params - budget) <= 0.05 * budget, (mixer, matched.model.d_model, params)


def test_bad_sweeps_are_refused_before_any_run(tmp_path):
    with pytest.raises(SweepError, match="unknown field colour"):
        parse_sweep({"name": "x", "colour": 1, "variants": ["rwkv4"], "tasks": ["byte_lm"]})
    sweep = tiny_sweep(variants=["softmax_attention", "no_such_mixer", {"label": "bad", "set": {"model.nope": 1}}],
                       tasks=["byte_lm", {"label": "masked", "set": {"task.name": "no_such_task"}}])
    with pytest.raises(SweepError) as e:
        run_sweep(sweep, tmp_path, log=lambda s: None)
    message = str(e.value)
    assert "no_such_mixer" in message and "unknown field 'nope'" in message and "no_such_task" in message
    assert not (tmp_path / DB_NAME).exists()
    with pytest.raises(SweepError, match="baseline"):
        tiny_sweep(baseline="not_a_variant")


def test_config_hash_is_stable_across_processes():
    cfg = RunConfig().override(["model.mixer.name=rwkv4", "train.lr=1e-3"])
    code = ("from trevo.config import RunConfig; "
            "print(RunConfig().override(['model.mixer.name=rwkv4', 'train.lr=1e-3']).hash())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == cfg.hash()


def test_sweep_runs_records_crashes_and_is_idempotent(tmp_path):
    sweep = tiny_sweep(variants=["softmax_attention", {"label": "diverges", "set": {"train.lr": 1.0e30}}])
    logs: list[str] = []
    store, chosen = run_sweep(sweep, tmp_path, log=logs.append)
    runs = {r.label: r for r in store.runs()}
    assert runs["softmax_attention"].status == "done" and runs["softmax_attention"].test["bpb"] > 0
    assert runs["diverges"].status == "failed" and "TrainingDiverged" in runs["diverges"].error
    assert runs["softmax_attention"].params > 0 and runs["softmax_attention"].flops_per_token > 0
    first = runs["softmax_attention"].val
    logs.clear()
    store, _ = run_sweep(sweep, tmp_path, log=logs.append)
    assert "1 already done, 1 to run" in logs[0]  # the failed run is retried, the done one is not
    assert store.get(runs["softmax_attention"].key).val == first
    paths = write_report(tmp_path / DB_NAME)
    assert "diverges" in paths["md"].read_text() and "Failed runs" in paths["md"].read_text()


def test_killed_sweep_resumes_only_the_missing_runs(tmp_path):
    spec = {"name": "tiny", "base": TINY_BASE, "variants": ["softmax_attention", "linear_attention", "rwkv4"],
            "tasks": ["byte_lm"], "seeds": [0]}
    (tmp_path / "sweep.yaml").write_text(json.dumps(spec))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "trevo.cli", "arena", str(tmp_path / "sweep.yaml"),
                             "--out", str(out), "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / DB_NAME).exists() and any(r.status == "done" for r in Store(out / DB_NAME).runs()):
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    done_before = {r.key: r.val for r in Store(out / DB_NAME).runs() if r.status == "done"}
    assert 1 <= len(done_before) < 3
    logs: list[str] = []
    store, _ = run_sweep(parse_sweep(spec), out, log=logs.append)
    assert f"{len(done_before)} already done, {3 - len(done_before)} to run" in logs[0]
    assert all(r.status == "done" for r in store.runs())
    for key, val in done_before.items():
        assert store.get(key).val == val


def _writer(path: str, prefix: str, n: int) -> None:
    store = Store(path)
    for i in range(n):
        store.add(Run(key=f"{prefix}{i}", sweep="s", label=prefix, family="f", task="t", seed=i, lr=0.1,
                      status="pending", config={}))
        store.update(f"{prefix}{i}", status="done", val={"loss": float(i)})


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
    store.add_sweep("fixture", "softmax_attention", "", {})
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


def test_the_learning_rate_is_chosen_on_validation_only():
    from trevo.arena.runner import choose

    def run(lr: float, seed: int, val: float, test: float, hib: bool = False) -> Run:
        return Run(key=f"{lr}-{seed}", sweep="s", label="m", family="f", task="t", seed=seed, lr=lr, status="done",
                   config={}, metric="bpb", higher_is_better=hib, val={"bpb": val}, test={"bpb": test})

    # lr 1e-3 is better on validation (lower bpb) but worse on test: validation decides.
    runs = [run(1e-3, 0, 2.0, 2.9), run(1e-3, 1, 2.1, 2.9), run(3e-3, 0, 2.2, 2.0), run(3e-3, 1, 2.2, 2.0)]
    assert {r.lr for r in choose(runs)} == {1e-3} and len(choose(runs)) == 2
    flipped = [run(r.lr, r.seed, r.val["bpb"], r.test["bpb"], hib=True) for r in runs]
    assert {r.lr for r in choose(flipped)} == {3e-3}
