"""Segment-level training (trevo.segments): streams read segment by segment with a memory carried from
segment to segment; a killed run resumes with its memory bit for bit."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import train_until_killed
from trevo.checkpoint import CHECKPOINT, read_checkpoint
from trevo.segments import flatten, forward_segment, init_memory, memory_kind, run_stream, train_segments, unflatten
from trevo.tasks.segment_recall import Passkey
from trevo.train import build, evaluate, train
from trevo.validation import ConfigError

STREAM = ["task.name=passkey", "task.seq_len=8", "task.segments=3", "task.distance=2", "task.n_key=2",
          "model.d_model=16", "model.n_layers=1"]


def test_flatten_round_trips_a_nested_state():
    state = {"offset": 5, "layers": [{"mixer": {"S": torch.randn(2, 3)}, "channel": {}}]}
    flat = flatten(state)
    assert set(flat) == {"offset", "layers.0.mixer.S"} and flat["offset"].dtype == torch.int64
    back = unflatten(flat, state)
    assert back["offset"] == 5 and torch.equal(back["layers"][0]["mixer"]["S"], state["layers"][0]["mixer"]["S"])


def test_a_recurrent_metaformer_carries_its_state_and_attention_has_no_memory(tiny_cfg):
    _, recurrent = build(tiny_cfg(*STREAM, "model.mixer.name=retnet"))
    _, attention = build(tiny_cfg(*STREAM))
    assert memory_kind(recurrent) == "state" and memory_kind(attention) == "none"


def test_segment_by_segment_equals_the_whole_stream_for_a_carried_state(tiny_cfg):
    """The memory after N segments is the state of one pass over the whole stream (the naive loop)."""
    task, model = build(tiny_cfg(*STREAM, "model.mixer.name=retnet"))
    model = model.double()
    batch = task.train_batch(0, 2, 0)
    memory = init_memory(model, 2, "cpu", torch.float64)
    logits, memory = run_stream(model, batch, 8, 0, 3, memory)
    whole, state = model.prefill(batch["input"])
    torch.testing.assert_close(logits, whole)
    torch.testing.assert_close(logits, model(batch["input"]))
    for key, value in flatten(state).items():
        torch.testing.assert_close(memory[key], value)


def test_attention_without_memory_sees_each_segment_alone(tiny_cfg):
    """No memory: a segment's logits do not depend on the segments before it (causality across the
    boundary holds trivially, and nothing leaks)."""
    task, model = build(tiny_cfg(*STREAM))
    batch = task.train_batch(0, 2, 0)
    logits, _ = run_stream(model, batch, 8, 0, 3, {})
    torch.testing.assert_close(logits[:, 16:], model(batch["input"][:, 16:]))


def test_truncated_bptt_steps_through_a_stream_and_detaches_between_steps(tmp_path, tiny_cfg):
    task, model = build(tiny_cfg(*STREAM, "model.mixer.name=retnet"))
    logits, batch, memory = train_segments(model, task, 0, 2, 0, 2, None, "cpu")
    assert logits.shape[1] == 16 and torch.equal(batch["input"], task.train_batch(0, 2, 0)["input"][:, :16])
    assert any(v.requires_grad for v in memory.values())  # the graph reaches back through both segments
    # step 1 is the last segment of stream 0; step 2 the first of stream 1 (a fresh memory)
    logits1, batch1, _ = train_segments(model, task, 1, 2, 0, 2, memory, "cpu")
    assert logits1.shape[1] == 8 and torch.equal(batch1["input"], task.train_batch(0, 2, 0)["input"][:, 16:])
    _, batch2, _ = train_segments(model, task, 2, 2, 0, 2, memory, "cpu")
    assert torch.equal(batch2["input"], task.train_batch(1, 2, 0)["input"][:, :16])
    with pytest.raises(ConfigError, match="bptt_segments"):
        train(tiny_cfg(*STREAM, "train.bptt_segments=4"), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="1 segment"):
        train(tiny_cfg("train.bptt_segments=2"), tmp_path, progress=False)  # byte_lm: single windows


def test_evaluation_reads_whole_streams_from_an_empty_memory(tiny_cfg):
    task, model = build(tiny_cfg(*STREAM, "model.mixer.name=retnet"))
    metrics = evaluate(model, task, "val", 4, 1)
    batch = next(task.eval_batches("val", 4, 1))
    model.eval()
    with torch.no_grad():
        expected = task.finalize(task.score(model(batch["input"]), batch))
    assert metrics == pytest.approx(expected)


def test_killed_run_resumes_with_its_memory_bitwise(tmp_path, tiny_cfg, monkeypatch):
    # 3 segments, one per step: the checkpoint after step 2 holds the memory step 3 starts from
    cfg = tiny_cfg(*STREAM, "model.mixer.name=retnet", "train.steps=6", "train.checkpoint_every=2",
                   "train.eval_every=3", "model.dropout=0.1")
    straight = train(cfg, tmp_path / "a", progress=False)
    # killed at step 3: after the checkpoint of step 2, mid-stream
    train_until_killed(cfg, tmp_path / "b", Passkey, 1, monkeypatch)
    tensors, meta = read_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert meta["step"] == 2 and any(k.startswith("memory.") for k in tensors)
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed["losses"] == straight["losses"] and resumed["history"] == straight["history"]


def test_forward_segment_of_a_model_without_memory_is_its_forward(tiny_cfg):
    task, model = build(tiny_cfg(*STREAM))
    tokens = task.train_batch(0, 2, 0)["input"][:, :8]
    logits, memory = forward_segment(model, tokens, {})
    assert memory == {} and torch.equal(logits, model(tokens))


def test_a_window_with_no_targets_moves_no_weight_and_resumes_exactly(tmp_path, tiny_cfg, monkeypatch):
    """Passkey with one segment per step: steps 1 and 2 of each stream score nothing (the question is in
    segment 3). They carry the memory on but take no AdamW step: the weights stay those of the step
    before (no momentum, no weight decay), and no loss is recorded for them."""
    cfg = tiny_cfg(*STREAM, "model.mixer.name=retnet", "train.weight_decay=0.5", "train.steps=2",
                   "train.checkpoint_every=1")
    task, model = build(cfg)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(cfg, tmp_path / "a", progress=False)
    tensors, meta = read_checkpoint(tmp_path / "a" / CHECKPOINT)
    for key, value in initial.items():  # AdamW's decay alone would have shrunk every matrix by lr · 0.5
        assert torch.equal(tensors[f"model.{key}"], value), key
    assert result["losses"] == [None, None]
    assert not any(k.startswith("optim.") for k in tensors)  # AdamW holds no moment, no step count
    # the third window scores the question: one update; then the next stream's first two windows none
    cfg = tiny_cfg(*STREAM, "model.mixer.name=retnet", "train.weight_decay=0.5", "train.steps=6",
                   "train.checkpoint_every=2", "train.eval_every=3")
    straight = train(cfg, tmp_path / "b", progress=False)
    assert [v is None for v in straight["losses"]] == [True, True, False, True, True, False]
    steps_csv = (tmp_path / "b" / "steps.csv").read_text().splitlines()
    assert steps_csv[1].split(",")[1] == "" and steps_csv[3].split(",")[1] != ""
    train_until_killed(cfg, tmp_path / "c", Passkey, 1, monkeypatch)  # killed mid-stream, after step 2
    resumed = train(cfg, tmp_path / "c", resume=True, progress=False)
    assert resumed["losses"] == straight["losses"] and resumed["history"] == straight["history"]
    tensors_b, _ = read_checkpoint(tmp_path / "b" / CHECKPOINT)
    tensors_c, _ = read_checkpoint(tmp_path / "c" / CHECKPOINT)
    assert all(torch.equal(tensors_b[k], tensors_c[k]) for k in tensors_b)
