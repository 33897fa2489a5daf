"""Masked language modelling (BERT): 15% of the bytes masked 80/10/10, bidirectional models only."""

from __future__ import annotations

import torch

from tests.helpers import check_batches_are_a_function_of_seed_and_step, train_two_steps
from trevo.registry import create


def test_batches_are_a_function_of_seed_and_step():
    # mlm spreads its windows over the split, so only the same request repeats (not a longer one).
    check_batches_are_a_function_of_seed_and_step("mlm", {"seq_len": 32}, prefix_stable=False)


def test_mlm_masks_15_percent_with_80_10_10():
    task = create("task", "mlm", seq_len=100)
    b = task.train_batch(0, 200, 0)
    m = b["loss_mask"]
    assert bool((m.sum(1) == 15).all()) and task.info.vocab_size == 257
    assert torch.equal(b["input"][~m], b["target"][~m])
    masked = (b["input"] == 256)[m].float().mean()
    kept = (b["input"] == b["target"])[m].float().mean()
    assert 0.76 < masked < 0.84 and 0.08 < kept < 0.15  # 10% kept + random bytes that happen to match
    assert task.info.causal == "forbidden" and task.info.metric == "bpb" and not task.info.higher_is_better


def test_trains_two_steps(tmp_path):
    train_two_steps(tmp_path, {"name": "mlm", "seq_len": 32}, "false")
