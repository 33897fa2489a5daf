"""Training, resume, divergence, data errors, checkpoints and generation."""

from __future__ import annotations

import json

import pytest
import torch

from trevo.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint
from trevo.generate import generate, state_bytes_at
from trevo.registry import get, names
from trevo.tasks.corpus import DataError, load_corpus
from trevo.train import TrainingDiverged, build, train


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

    real_batch = ByteLM.train_batch

    def killed_at_step_4(self, step, batch_size, seed):
        if step == 4:
            raise KeyboardInterrupt  # dies mid-run: after the step-3 checkpoint, during step 4
        return real_batch(self, step, batch_size, seed)

    monkeypatch.setattr(ByteLM, "train_batch", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", progress=False)
    monkeypatch.setattr(ByteLM, "train_batch", real_batch)
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


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_cfg):
    train(tiny_cfg(), tmp_path, progress=False)
    path = tmp_path / CHECKPOINT
    path.write_bytes(path.read_bytes()[:100])
    _, model = build(tiny_cfg())
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path, model)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing.safetensors", model)


def test_missing_empty_and_small_data(tmp_path, tiny_cfg):
    with pytest.raises(DataError, match="does not exist"):
        build(tiny_cfg(f"task.data={tmp_path / 'nope.txt'}"))
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        build(tiny_cfg(f"task.data={tmp_path / 'empty.txt'}"))
    (tmp_path / "small.txt").write_bytes(b"hello world" * 3)
    with pytest.raises(DataError, match="too few for seq_len"):
        build(tiny_cfg(f"task.data={tmp_path / 'small.txt'}"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="too little"):
        build(tiny_cfg(f"task.data={tmp_path / 'folder'}"))


def test_user_text_file_trains(tmp_path, tiny_cfg):
    (tmp_path / "text.txt").write_text("the quick brown fox jumps over the lazy dog. " * 200)
    result = train(tiny_cfg(f"task.data={tmp_path / 'text.txt'}"), tmp_path / "run", progress=False)
    assert result["final"]["bpb"] > 0


CAUSAL = [n for n in names("mixer") if get("mixer", n).causal]


@pytest.mark.parametrize("mixer", CAUSAL)
def test_greedy_generation_is_the_same_in_both_modes(tiny_cfg, mixer):
    _, model = build(tiny_cfg(f"model.mixer.name={mixer}", "train.dtype=float64",
                              "model.position.name=sinusoidal"))
    torch.nn.init.normal_(model.embed.weight, std=1.0)  # sharper logits than at init: fewer near-ties
    a, _ = generate(model, b"def f(x):", 12, mode="parallel")
    b, state = generate(model, b"def f(x):", 12, mode="recurrent")
    assert a == b and len(a) == 12 and state > 0


def test_recurrent_state_is_constant_for_rnns_and_grows_for_attention(tiny_cfg):
    sizes = {}
    for mixer in ("softmax_attention", "linear_attention", "rwkv4"):
        _, model = build(tiny_cfg(f"model.mixer.name={mixer}"))
        sizes[mixer] = (state_bytes_at(model, 64), state_bytes_at(model, 512))
    assert sizes["rwkv4"][0] == sizes["rwkv4"][1]
    assert sizes["linear_attention"][0] == sizes["linear_attention"][1]
    assert sizes["softmax_attention"][1] == 8 * sizes["softmax_attention"][0]
