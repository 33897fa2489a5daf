"""Training: it learns, a killed run resumes bitwise identically, an existing run needs --resume, and a
NaN loss stops the run keeping the last good checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import train_until_killed
from trevo.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint
from trevo.tasks.corpus import load_corpus
from trevo.train import TrainingDiverged, build, train


@pytest.mark.slow
def test_training_beats_the_unigram_entropy(tmp_path, tiny_cfg):
    cfg = tiny_cfg("model.d_model=64", "task.seq_len=64", "train.batch_size=16", "train.steps=150",
                   "train.eval_every=150", "train.checkpoint_every=150", "train.eval_batches=4",
                   "train.warmup_steps=10", "train.lr=3e-3")
    result = train(cfg, tmp_path, progress=False)
    unigram = load_corpus().unigram_entropy()
    assert 4.0 < unigram < 6.0
    assert result["final"]["bpb"] < unigram - 0.8, (result["final"], unigram)
    assert json.loads((tmp_path / "result.json").read_text())["final"] == result["final"]


@pytest.mark.parametrize("mixer", ["softmax_attention", "rwkv4"])
def test_killed_run_resumes_bitwise_identically(tmp_path, tiny_cfg, mixer, monkeypatch):
    from trevo.tasks.byte_lm import ByteLM

    cfg = tiny_cfg(f"model.mixer.name={mixer}", "model.dropout=0.1")
    straight = train(cfg, tmp_path / "a", progress=False)

    # dies mid-run: after the step-3 checkpoint, during step 4
    train_until_killed(cfg, tmp_path / "b", ByteLM, 4, monkeypatch)
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed["losses"] == straight["losses"]
    assert resumed["history"] == straight["history"]
    _, m1 = build(cfg)
    _, m2 = build(cfg)
    load_checkpoint(tmp_path / "a" / CHECKPOINT, m1)
    load_checkpoint(tmp_path / "b" / CHECKPOINT, m2)
    for (k, p1), p2 in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(p1, p2), k


def test_existing_run_needs_resume(tmp_path, tiny_cfg):
    train(tiny_cfg(), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="pass --resume"):
        train(tiny_cfg(), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="another config"):
        train(tiny_cfg("train.lr=1e-4"), tmp_path, resume=True, progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_cfg, monkeypatch):
    from trevo.tasks.byte_lm import ByteLM

    real_loss = ByteLM.loss
    calls = {"n": 0}

    def poisoned(self, logits, batch):
        calls["n"] += 1
        loss = real_loss(self, logits, batch)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(ByteLM, "loss", poisoned)
    with pytest.raises(TrainingDiverged, match="at step 4.*last good checkpoint"):
        train(tiny_cfg(), tmp_path, progress=False)
    _, model = build(tiny_cfg())
    assert load_checkpoint(tmp_path / CHECKPOINT, model)["step"] == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_auxiliary_losses_reach_the_training_objective(tmp_path, tiny_cfg):
    """Adaptive span's span penalty (an ``auxiliary_loss()``) is added to the loss that is minimised:
    with a large λ the learned spans shrink, with λ = 0 they do not."""
    spans = {}
    for penalty in (0.0, 50.0):
        cfg = tiny_cfg("model.mixer.name=adaptive_span", "model.mixer.window=16", f"model.mixer.span_penalty={penalty}",
                       "train.lr=0.1", "train.weight_decay=0")
        train(cfg, tmp_path / str(penalty), progress=False)
        _, model = build(cfg)
        load_checkpoint(tmp_path / str(penalty) / CHECKPOINT, model)
        spans[penalty] = torch.stack([m.spans() for m in model.modules() if hasattr(m, "spans")]).mean().item()
    initial = 0.1 * 16
    assert spans[50.0] < 0.8 * initial and spans[50.0] < 0.8 * spans[0.0], spans


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_device_is_one_config_error(tmp_path, tiny_cfg):
    from trevo.config import ConfigError

    for device in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=f"train.device={device} but torch sees no CUDA device"):
            train(tiny_cfg(f"train.device={device}"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.slow
def test_compiled_blocks_train_as_eager_ones(tmp_path, tiny_cfg):
    # torch.compile (inductor, CPU) reorders float32 sums: 5e-7 measured over these 6 steps
    eager = train(tiny_cfg(), tmp_path / "eager", progress=False)
    compiled = train(tiny_cfg("train.compile=true"), tmp_path / "compiled", progress=False)
    assert max(abs(a - b) for a, b in zip(eager["losses"], compiled["losses"], strict=True)) < 1e-5
    _, model = build(tiny_cfg())
    load_checkpoint(tmp_path / "compiled" / CHECKPOINT, model)  # compiled in place: the same weight names


FIXED_MQAR = ["task.name=mqar", "task.seq_len=16", "task.n_pairs=2", "task.vocab_size=32", "task.train_size=20",
              "task.test_size=8"]


def test_a_killed_run_on_a_fixed_training_set_resumes_identically(tmp_path, tiny_cfg, monkeypatch):
    """Batches of 4 from 20 examples: the kill lands in the second epoch, and the resumed run reads the
    same epochs' permutations as the uninterrupted one."""
    from trevo.tasks.mqar import MQAR

    cfg = tiny_cfg(*FIXED_MQAR, "train.steps=9", "train.eval_every=3", "train.checkpoint_every=3")
    straight = train(cfg, tmp_path / "a", progress=False)
    train_until_killed(cfg, tmp_path / "b", MQAR, 7, monkeypatch)
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed["losses"] == straight["losses"] and resumed["history"] == straight["history"]


def test_early_stopping_ends_the_run_at_the_first_passing_evaluation_and_stays_stopped(tmp_path, tiny_cfg):
    # Accuracy always passes -1: the run stops at its first evaluation (step 3 of 9).
    cfg = tiny_cfg(*FIXED_MQAR, "train.steps=9", "train.eval_every=3", "train.checkpoint_every=100",
                   "train.stop_at=-1")
    result = train(cfg, tmp_path, progress=False)
    assert result["steps_run"] == 3 and result["stopped_early"] and len(result["losses"]) == 3
    assert [h["step"] for h in result["history"]] == [3]
    assert result["tokens"] == 3 * 4 * 16
    again = train(cfg, tmp_path, resume=True, progress=False)  # the checkpoint at the stop: nothing more to do
    assert again["losses"] == result["losses"] and again["steps_run"] == 3
    never = train(tiny_cfg(*FIXED_MQAR, "train.steps=9", "train.eval_every=3", "train.stop_at=2"), tmp_path / "n",
                  progress=False)
    assert never["steps_run"] == 9 and not never["stopped_early"]


def test_an_objective_of_its_own_under_mixed_precision_is_refused_before_anything_is_written(tmp_path, tiny_cfg):
    from trevo.config import ConfigError

    cfg = tiny_cfg("task.name=mlm", "train.objective=electra", "train.precision=bf16")
    with pytest.raises(ConfigError, match="train.objective=electra trains in one process in float32"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
