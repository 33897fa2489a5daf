"""The arena runner: a sweep records crashes and is idempotent, a killed sweep resumes only the missing
runs, and the learning rate is chosen on validation only."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.helpers import tiny_sweep, tiny_sweep_spec
from trevo.arena.report import write_report
from trevo.arena.runner import DB_NAME, run_sweep, threads_per_worker
from trevo.arena.store import Run, Store
from trevo.arena.sweep import SweepError, parse_sweep


@pytest.mark.slow
def test_sweep_runs_records_crashes_and_is_idempotent(tmp_path):
    sweep = tiny_sweep(variants=["softmax_attention", {"label": "diverges", "set": {"train.lr": 1.0e30}}])
    logs: list[str] = []
    store, chosen = run_sweep(sweep, tmp_path, log=logs.append)
    runs = {r.label: r for r in store.runs()}
    assert runs["softmax_attention"].status == "done" and runs["softmax_attention"].test["bpb"] > 0
    assert runs["diverges"].status == "failed" and "TrainingDiverged" in runs["diverges"].error
    assert runs["softmax_attention"].params > 0 and runs["softmax_attention"].flops_per_token > 0
    assert runs["softmax_attention"].state_bytes > 0
    first = runs["softmax_attention"].val
    logs.clear()
    store, _ = run_sweep(sweep, tmp_path, log=logs.append)
    assert "1 already done, 1 to run" in logs[0]  # the failed run is retried, the done one is not
    assert store.get(runs["softmax_attention"].key).val == first
    paths = write_report(tmp_path / DB_NAME)
    assert "diverges" in paths["md"].read_text() and "Failed runs" in paths["md"].read_text()


@pytest.mark.slow
def test_redo_trains_the_named_variants_again_and_keeps_their_old_run_directories(tmp_path):
    sweep = tiny_sweep()
    store, _ = run_sweep(sweep, tmp_path, log=lambda line: None)
    before = {r.label: r for r in store.runs()}
    (tmp_path / "runs" / before["linear_attention"].key / "note.txt").write_text("the user's")
    logs: list[str] = []
    store, _ = run_sweep(sweep, tmp_path, log=logs.append, redo=["linear_attention"])
    assert "1 already done, 1 to run" in logs[0]
    after = {r.label: r for r in store.runs()}
    redone, kept = after["linear_attention"], after["softmax_attention"]
    assert redone.status == "done" and redone.updated > before["linear_attention"].updated
    assert kept.updated == before["softmax_attention"].updated  # not redone
    runs = tmp_path / "runs"
    assert (runs / f"{redone.key}.superseded-1" / "note.txt").read_text() == "the user's"
    assert (runs / redone.key).is_dir()
    with pytest.raises(SweepError, match="--redo mamba: not a variant of sweep 'tiny'; its variants: "
                                         "softmax_attention, linear_attention"):
        run_sweep(sweep, tmp_path, redo=["mamba"])


@pytest.mark.slow
def test_killed_sweep_resumes_only_the_missing_runs(tmp_path):
    spec = tiny_sweep_spec(variants=["softmax_attention", "linear_attention", "rwkv4"], baseline=None)
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


def test_each_worker_takes_omp_num_threads_when_set_else_its_share_of_the_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads_per_worker(1) == 1 and threads_per_worker(4) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_worker(2) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert [threads_per_worker(w) for w in (1, 2, 3, 16)] == [8, 4, 2, 1]


def test_state_bytes_are_the_kv_cache_or_the_constant_recurrent_state():
    """Softmax attention's cache is 2 (k, v) × T × d_model floats per layer; linear attention's state is
    H × (D × D + D) per layer whatever T; a masked LM does not generate."""
    from trevo.arena.runner import _state_bytes
    from trevo.config import RunConfig

    def cfg(mixer, seq_len, task="byte_lm"):
        return RunConfig().replace({"model.mixer": {"name": mixer}, "model.d_model": 16, "model.n_layers": 2,
                                    "task.name": task, "task.seq_len": seq_len})

    assert _state_bytes(cfg("softmax_attention", 32)) == 2 * 2 * 32 * 16 * 4
    assert _state_bytes(cfg("softmax_attention", 64)) == 2 * 2 * 64 * 16 * 4
    H, D = 4, 4
    assert _state_bytes(cfg("linear_attention", 32)) == _state_bytes(cfg("linear_attention", 64)) \
        == 2 * H * (D * D + D) * 4
    assert _state_bytes(cfg("linear_attention", 32, task="mlm")) is None


def test_state_bytes_of_a_memory_model_are_its_memory_after_the_stream():
    """Passkey streams of 3 segments of 8 tokens, d_model 16, 2 layers, float32: Transformer-XL caches
    memory_len layer inputs per layer (2 × 8 × 16 × 4; with memory_len 16, 2 × 16 × 16 × 4), RMT its m = 4
    memory tokens (4 × 16 × 4), the Memorizing Transformer the keys and values of all 24 tokens in its
    one kNN layer (2 × 24 × 16 × 4); softmax attention without memory a KV cache of one segment."""
    from trevo.arena.runner import _state_bytes
    from trevo.config import RunConfig

    def cfg(**model):
        return RunConfig().replace({"model.d_model": 16, "model.n_layers": 2, "task.name": "passkey",
                                    "task.seq_len": 8, "task.segments": 3, "task.distance": 2, "task.n_key": 2,
                                    **{f"model.{k}": v for k, v in model.items()}})

    assert _state_bytes(cfg(arch="transformer_xl")) == 2 * 8 * 16 * 4
    assert _state_bytes(cfg(arch="transformer_xl", options={"memory_len": 16})) == 2 * 16 * 16 * 4
    assert _state_bytes(cfg(arch="rmt")) == 4 * 16 * 4
    assert _state_bytes(cfg(arch="rmt", options={"n_memory_tokens": 2})) == 2 * 16 * 4
    assert _state_bytes(cfg(arch="memorizing_transformer")) == 2 * 24 * 16 * 4
    assert _state_bytes(cfg()) == 2 * 2 * 8 * 16 * 4


def test_finished_runs_made_with_other_component_defaults_are_named():
    from trevo.arena.runner import changed_defaults
    from trevo.config import RunConfig
    from trevo.runlog import resolved_defaults

    cfg = RunConfig().override(["model.mixer.name=gla"])
    now = resolved_defaults(cfg)
    older = json.loads(json.dumps(now))
    older["model.mixer"]["options"]["chunk_size"] = 32  # as if an older trevo's GLA had defaulted to 32

    def run(defaults):
        return Run(key="k", sweep="s", label="gla", family="gla", task="byte_lm", seed=0, lr=1e-3, status="done",
                   config=cfg.to_dict(), versions=None if defaults is None else {"defaults": defaults})

    assert changed_defaults([run(json.loads(json.dumps(now))), run(None)]) == []  # same, or recorded before stamps
    assert changed_defaults([run(older)]) == ["gla: model.mixer.chunk_size was 32, now None"]
